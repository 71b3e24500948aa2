"""Datasets written from captures outside :mod:`openclone.store.export`: distill outputs
and a loop run's working files (its prompts, held-out set and distilled set).

Such a file is registered as an :class:`~openclone.store.tables.Export` whose ``filters``
say ``{"source": "distill", ...}`` (or ``"loop"``), with one :class:`~openclone.store.tables.ExportItem`
per capture id its rows carry in ``metadata.capture_id`` — the lineage an erasure follows
to the file, rewrites it through, and lists in ``openclone audit erasures``.

A loop's evaluation report (``run-N/eval-vs-KEY/report.json``, kind ``"eval report"``) is
one JSON document, not rows of JSONL: its ``rows`` quote the held-out captures' prompts and
the answers, each row's ``id`` the capture id (:func:`register_report`). An erasure drops
those rows and deletes the Markdown and HTML renderings beside it (the store cannot render
them again); the aggregate figures stay as computed, the evidence the gate weighed, and
``erased_rows`` says how many rows they cover that are no longer shown.

Unlike an export, such a file grows across sessions of a run, so an erasure does not
insist on the hash it was registered with: it drops the rows whose capture id it erased,
whatever else the file gained since. The writer's own advisory lock (``flock``, which
:class:`openclone.distill.output.DistillOutput` holds while it appends) keeps a rewrite
from swapping the file under a running writer; when the writer holds it, the writer's
next registration drops those rows instead (a capture that is gone was erased).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from openclone.files import atomic_write, file_sha256
from openclone.store.audit import audit
from openclone.store.db import Store
from openclone.store.tables import Capture, Export, ExportItem

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory lock
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DISTILL",
    "EVAL_REPORT",
    "LOOP",
    "RegisteredDataset",
    "is_derived",
    "register_dataset",
    "register_report",
    "rewrite_without",
    "row_capture_id",
    "writer_lock",
]

log = logging.getLogger("openclone.store")
DISTILL = "distill"
LOOP = "loop"  # a loop run's files under $OPENCLONE_HOME/loops/LOOP/run-N
EVAL_REPORT = "eval report"  # a loop run's eval-vs-KEY/report.json
_KINDS = (DISTILL, LOOP, EVAL_REPORT)
_RENDERINGS = ("report.md", "report.html")  # what evaluate writes beside a report.json
_CHUNK = 500  # ids per IN (...) list: well under every backend's parameter limit


@dataclass(frozen=True)
class RegisteredDataset:
    id: str  # the Export record's id
    path: Path
    rows: int
    sha256: str
    dropped: int  # rows removed now because their capture had been erased


def is_derived(export: Export) -> bool:
    return (export.filters or {}).get("source") in _KINDS


def row_capture_id(line: str | bytes) -> Any:
    try:
        return json.loads(line).get("metadata", {}).get("capture_id")
    except (ValueError, AttributeError):
        return None


def rewrite_without(path: Path, erased: set[str], kind: str | None = None) -> int:
    """Rewrite ``path`` without the rows whose capture id is in ``erased``; the rows kept.

    Atomic (a reader sees the old file or the new one) and 0600 from the first byte.
    """
    if kind == EVAL_REPORT:
        return _rewrite_report(path, erased)
    kept: list[str] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if row_capture_id(line) not in erased:
                kept.append(line)
    atomic_write(path, "".join(kept))
    return len(kept)


def _rewrite_report(path: Path, erased: set[str]) -> int:
    report = json.loads(path.read_text(encoding="utf-8"))
    rows = report.get("rows") or []
    kept = [r for r in rows if not (isinstance(r, dict) and r.get("id") in erased)]
    if len(kept) < len(rows):
        report["rows"] = kept
        report["erased_rows"] = int(report.get("erased_rows") or 0) + len(rows) - len(kept)
        atomic_write(path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        for name in _RENDERINGS:  # they quote the rows too
            (path.parent / name).unlink(missing_ok=True)
    return len(kept)


@contextmanager
def writer_lock(path: Path, wait: float = 10.0) -> Iterator[bool]:
    """The lock a distill writer holds on ``path``; yields False when it stayed taken for
    ``wait`` seconds (a run is writing the file right now)."""
    if fcntl is None:  # pragma: no cover
        yield True
        return
    with path.open("rb") as f:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.05)
        try:
            yield True
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def register_dataset(
    store: Store, path: Path, *, actor: str, source: dict[str, Any], kind: str = DISTILL
) -> RegisteredDataset | None:
    """Record (or bring up to date) the dataset at ``path`` and the captures its rows came
    from; rows of captures erased meanwhile are dropped first. None when there is no file,
    or a writer holds it (that writer registers it when it ends)."""
    path = Path(path).resolve()
    if not path.is_file():
        return None
    ids = _capture_ids(path)
    if not ids:
        return None  # nothing in it came from a capture: nothing an erasure must reach
    # The items go in before the check below, so an erasure committed after the check
    # finds this file through them; one committed before it is caught by the check. No
    # database write happens under the file lock: an erasure waits for that lock inside
    # its transaction.
    export_id = _record_items(store, path, ids, actor, {**source, "source": kind})
    with writer_lock(path, wait=0) as free:
        if not free:
            return None
        gone = ids - _existing(store, ids)
        if gone:
            rewrite_without(path, gone)
    return _settle(store, export_id, path, _count_rows(path), gone, actor)


def register_report(
    store: Store, path: Path, capture_ids: set[str], *, actor: str, source: dict[str, Any]
) -> RegisteredDataset | None:
    """Record an evaluation report whose rows with an ``id`` in ``capture_ids`` quote those
    captures (the caller knows which ids are capture ids: a fixed eval set's are not);
    rows of captures erased meanwhile are dropped now. None when it holds none."""
    path = Path(path).resolve()
    if not capture_ids or not path.is_file():
        return None
    export_id = _record_items(store, path, capture_ids, actor, {**source, "source": EVAL_REPORT})
    gone = capture_ids - _existing(store, capture_ids)
    with writer_lock(path):  # not swapped under an erasure rewriting it too
        rows = _rewrite_report(path, gone)
    return _settle(store, export_id, path, rows, gone, actor)


def _settle(
    store: Store, export_id: str, path: Path, rows: int, gone: set[str], actor: str
) -> RegisteredDataset:
    digest = file_sha256(path)
    with store.session() as s:
        export = s.get(Export, export_id)
        assert export is not None  # written above; exports are never deleted
        export.sha256, export.rows = digest, rows
        if digest not in (export.hashes or []):
            export.hashes = [*(export.hashes or []), digest]
        audit(s, actor, "export.dataset", export=export_id, path=str(path), rows=rows,
              sha256=digest, dropped_erased=len(gone))  # fmt: skip
    if gone:
        log.warning("%s: dropped %d rows of erased captures", path, len(gone))
    return RegisteredDataset(export_id, path, rows, digest, len(gone))


def _capture_ids(path: Path) -> set[str]:
    with path.open("rb") as f:
        return {cid for line in f if isinstance(cid := row_capture_id(line), str)}


def _count_rows(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


def _existing(store: Store, ids: set[str]) -> set[str]:
    wanted, found = sorted(ids), set()
    with store.session() as s:
        for i in range(0, len(wanted), _CHUNK):
            found |= set(
                s.scalars(select(Capture.id).where(Capture.id.in_(wanted[i : i + _CHUNK])))
            )
    return found


def _record_items(
    store: Store, path: Path, ids: set[str], actor: str, source: dict[str, Any]
) -> str:
    with store.session() as s:
        kind = source["source"]
        mine = (Export.path == str(path)) & (Export.filters["source"].as_string() == kind)
        export = s.scalar(select(Export).where(mine).order_by(Export.created.desc()).limit(1))
        if export is None:
            export = Export(path=str(path), sha256="", hashes=[], rows=0, actor=actor,
                            filters=source)  # fmt: skip
            s.add(export)
            s.flush()
        known = set(
            s.scalars(select(ExportItem.capture_id).where(ExportItem.export_id == export.id))
        )
        s.add_all(ExportItem(export_id=export.id, capture_id=c) for c in sorted(ids - known))
        return export.id
