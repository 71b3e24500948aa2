"""Human review of a dataset: register a JSONL file, page through it, edit answers,
approve or reject, and export what was approved with the edits applied.

A dataset is registered by path and content hash (registering the same file again is a
no-op); each row becomes a :class:`~openclone.store.tables.ReviewExample`, sealed like a
capture with its tenant's data key (the tenant of the captures its rows came from, else
the operator's ``default``). Listing is keyset-paged by row number, filtered by state and
searched through keyed word fingerprints (:mod:`.review_search`), so a page of a 50K-row
dataset costs one indexed query and the decryption of that page only. Every edit,
approval and rejection is audited (``review.*``); an erasure deletes the examples of the
erased captures (:mod:`.privacy`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from openclone.errors import APIError, InvalidRequestError
from openclone.files import atomic_write, file_sha256
from openclone.store.accounts import ensure_tenant, find_tenant
from openclone.store.audit import audit
from openclone.store.db import Store
from openclone.store.derived import register_dataset
from openclone.store.review_search import fingerprints, matches, new_search_key
from openclone.store.sealed import keyring
from openclone.store.tables import (
    AuditEntry,
    Capture,
    ReviewDataset,
    ReviewExample,
    Tenant,
    now,
)

__all__ = [
    "STATES",
    "DatasetInfo",
    "ExampleInfo",
    "ExamplePage",
    "ReviewNotFound",
    "edit_answer",
    "export_approved",
    "find_for_path",
    "get_dataset",
    "get_example",
    "list_datasets",
    "list_examples",
    "register",
    "set_state",
]

STATES = ("pending", "approved", "rejected")
_CHUNK = 2000  # rows per INSERT: well under SQLite's and PostgreSQL's parameter limits
_AUDITED_ROWS = 1000  # a bulk action lists its rows up to this many, else counts them
_VERBS = {"approved": "review.approve", "rejected": "review.reject", "pending": "review.reset"}


class ReviewNotFound(APIError):
    status_code = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


@dataclass(frozen=True)
class DatasetInfo:
    id: str
    name: str
    path: str
    sha256: str
    tenant: str
    rows: int
    counts: dict[str, int]  # by state, and "edited"
    actor: str
    created: float

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class ExampleInfo:
    dataset: str
    row: int
    source: str  # capture|teacher|seed|import
    capture_id: str | None
    teacher: str | None
    messages: list[dict[str, Any]]  # what comes before the answer
    original: str  # the answer as the file had it
    answer: str  # what training gets: the edit, else the original
    edited: bool
    state: str
    reviewer: str | None
    updated: float | None

    @property
    def prompt(self) -> str:
        """The last user turn: what a reviewer reads first."""
        users = [m for m in self.messages if m.get("role") == "user"]
        return _text(users[-1].get("content")) if users else ""

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return {**data, "prompt": self.prompt}


@dataclass(frozen=True)
class ExamplePage:
    data: list[ExampleInfo]
    has_more: bool
    total: int  # rows that match the filter and search, on every page

    @property
    def next_after(self) -> int | None:
        return self.data[-1].row if self.data and self.has_more else None


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: their text
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _check_row(raw: str, n: int, path: Path) -> dict[str, Any]:
    try:
        row = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(f"{path} line {n + 1}: not JSON ({exc.msg})") from None
    messages = row.get("messages") if isinstance(row, dict) else None
    if not (
        isinstance(messages, list)
        and len(messages) >= 2
        and all(isinstance(m, dict) for m in messages)
        and messages[-1].get("role") == "assistant"
        and any(m.get("role") == "user" for m in messages)
    ):
        raise InvalidRequestError(
            f'{path} line {n + 1}: a review needs OpenAI chat rows ({{"messages": [...]}} '
            "with a user turn and the assistant's answer last); convert other layouts with "
            "`openclone data convert --to openai`"
        )
    return dict(row)


def _meta(row: dict[str, Any]) -> dict[str, Any]:
    meta = row.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _source(meta: dict[str, Any]) -> str:
    if meta.get("capture_id"):
        return "capture"
    if meta.get("source") == "seed":
        return "seed"
    return "teacher" if meta.get("teacher") else "import"


def _too_big(path: Path, size: int, max_bytes: int) -> InvalidRequestError:
    return InvalidRequestError(
        f"{path} is {size} bytes; a review reads at most {max_bytes} here (max_file_bytes)",
        param="path", code="file_too_large",
    )  # fmt: skip


def _read(path: Path, max_bytes: int | None) -> list[dict[str, Any]]:
    try:
        with path.open("rb") as f:  # at most one byte past the cap: never a whole huge file
            data = f.read() if max_bytes is None else f.read(max_bytes + 1)
        if max_bytes is not None and len(data) > max_bytes:
            raise _too_big(path, len(data), max_bytes)  # it grew since it was measured
        lines = data.decode("utf-8").splitlines()
    except FileNotFoundError:
        raise InvalidRequestError(f"no file {path}", param="path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"cannot read {path}: {exc}", param="path") from None
    return [_check_row(line, n, path) for n, line in enumerate(lines) if line.strip()]


def _tenant(s: Session, name: str | None, rows: list[dict[str, Any]]) -> Tenant:
    """Whose key seals the examples: the named tenant, else the tenant of the first
    capture the rows came from that is still stored, else the operator's."""
    if name:
        t = find_tenant(s, name)
        if t is None:
            raise InvalidRequestError(f"no tenant named {name!r}", param="tenant")
        return t
    ids = [c for r in rows if isinstance(c := (r.get("metadata") or {}).get("capture_id"), str)]
    for i in range(0, len(ids), _CHUNK):
        tid = s.scalar(select(Capture.tenant_id).where(Capture.id.in_(ids[i : i + _CHUNK])))
        if tid is not None:
            t = s.get(Tenant, tid)
            assert t is not None  # the capture's foreign key
            return t
    return ensure_tenant(s, "default")


def _registered(store: Store, path: Path, digest: str) -> DatasetInfo | None:
    with store.session() as s:
        known = s.scalar(
            select(ReviewDataset).where(
                ReviewDataset.path == str(path), ReviewDataset.sha256 == digest
            )
        )
        return _info(s, known) if known is not None else None


def register(
    store: Store,
    path: Path,
    *,
    actor: str,
    tenant: str | None = None,
    max_bytes: int | None = None,
) -> DatasetInfo:
    """The dataset at ``path`` registered for review (again: the same registration).
    ``max_bytes``: refuse a larger file (the file is read into memory whole)."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise InvalidRequestError(f"no file {path}", param="path")
    if max_bytes is not None and (size := path.stat().st_size) > max_bytes:
        raise _too_big(path, size, max_bytes)
    digest = file_sha256(path)
    known = _registered(store, path, digest)
    if known is not None:
        return known
    rows = _read(path, max_bytes)
    try:
        return _add(store, path, digest, rows, actor, tenant)
    except IntegrityError:
        # The same file registered at the same moment elsewhere committed first (the
        # unique path and hash): that registration is this one.
        known = _registered(store, path, digest)
        if known is None:
            raise
        return known


def _add(
    store: Store,
    path: Path,
    digest: str,
    rows: list[dict[str, Any]],
    actor: str,
    tenant: str | None,
) -> DatasetInfo:
    with store.session() as s:
        t = _tenant(s, tenant, rows)
        ds = ReviewDataset(name=path.name, path=str(path), sha256=digest, tenant_id=t.id,
                           search_key="", rows=len(rows), actor=actor, created=now())  # fmt: skip
        s.add(ds)
        s.flush()
        k, key = keyring(s), new_search_key()
        ds.search_key = k.seal_text(s, t.id, "review_datasets.search_key", ds.id, key)
        values = []
        for n, row in enumerate(rows):
            meta = _meta(row)
            text = " ".join(_text(m.get("content")) for m in row["messages"])
            sealed = k.seal_text(s, t.id, "review_examples.example", f"{ds.id}#{n}",
                                 json.dumps(row, ensure_ascii=False))  # fmt: skip
            capture = meta.get("capture_id")
            values.append({
                "dataset_id": ds.id, "row": n, "source": _source(meta),
                "capture_id": capture if isinstance(capture, str) else None,
                "teacher": str(meta["teacher"])[:256] if meta.get("teacher") else None,
                "example": sealed, "answer": None, "words": fingerprints(key, text),
                "state": "pending", "reviewer": None, "updated": None,
            })  # fmt: skip
        for i in range(0, len(values), _CHUNK):
            s.execute(insert(ReviewExample), values[i : i + _CHUNK])
        audit(s, actor, "review.add", dataset=ds.id, path=str(path), sha256=digest,
              rows=len(rows), tenant=t.name)  # fmt: skip
        return _info(s, ds)


def _info(s: Session, ds: ReviewDataset) -> DatasetInfo:
    counts = {state: 0 for state in STATES}
    for state, n in s.execute(
        select(ReviewExample.state, func.count())
        .where(ReviewExample.dataset_id == ds.id)
        .group_by(ReviewExample.state)
    ):
        counts[state] = n
    counts["edited"] = int(s.scalar(select(func.count()).where(
        ReviewExample.dataset_id == ds.id, ReviewExample.answer.is_not(None)
    )) or 0)  # fmt: skip
    tenant = s.get(Tenant, ds.tenant_id)
    return DatasetInfo(ds.id, ds.name, ds.path, ds.sha256, tenant.name if tenant else "",
                       ds.rows, counts, ds.actor, ds.created)  # fmt: skip


def _dataset(s: Session, ref: str) -> ReviewDataset:
    """By id, or by a unique prefix of it (at least 4 characters), as git names commits."""
    ds = s.get(ReviewDataset, ref)
    if ds is None and len(ref) >= 4:
        found = list(s.scalars(select(ReviewDataset).where(ReviewDataset.id.startswith(ref))
                               .limit(2)))  # fmt: skip
        ds = found[0] if len(found) == 1 else None
    if ds is None:
        raise ReviewNotFound(f"no dataset under review with id {ref!r}", param="dataset")
    return ds


def get_dataset(store: Store, ref: str) -> DatasetInfo:
    with store.session() as s:
        return _info(s, _dataset(s, ref))


def find_for_path(store: Store, path: Path) -> DatasetInfo | None:
    """The newest registration of the file at ``path`` (whatever its content now)."""
    with store.session() as s:
        ds = s.scalar(
            select(ReviewDataset)
            .where(ReviewDataset.path == str(Path(path).expanduser().resolve()))
            .order_by(ReviewDataset.created.desc())
            .limit(1)
        )
        return _info(s, ds) if ds is not None else None


def list_datasets(store: Store, limit: int = 50, offset: int = 0) -> list[DatasetInfo]:
    """Newest first."""
    with store.session() as s:
        q = select(ReviewDataset).order_by(ReviewDataset.created.desc(), ReviewDataset.id)
        return [_info(s, ds) for ds in s.scalars(q.offset(offset).limit(limit))]


def _filters(s: Session, ds: ReviewDataset, state: str | None, search: str | None) -> list[Any]:
    where: list[Any] = [ReviewExample.dataset_id == ds.id]
    if state:
        if state not in STATES:
            raise InvalidRequestError(f"state: one of {', '.join(STATES)}", param="state")
        where.append(ReviewExample.state == state)
    if search and search.strip():
        key = keyring(s).open_text(s, ds.tenant_id, "review_datasets.search_key", ds.id,
                                   ds.search_key)  # fmt: skip
        clause = matches(ReviewExample.words, key, search)
        if clause is None:
            raise InvalidRequestError("search: give at least one word", param="search")
        where.append(clause)
    return where


def _opened(s: Session, ds: ReviewDataset, e: ReviewExample) -> tuple[dict[str, Any], str | None]:
    """The example's row as the file had it, and its edited answer (None: not edited)."""
    k, place = keyring(s), f"{ds.id}#{e.row}"
    row = json.loads(k.open_text(s, ds.tenant_id, "review_examples.example", place, e.example))
    edit = (k.open_text(s, ds.tenant_id, "review_examples.answer", place, e.answer)
            if e.answer is not None else None)  # fmt: skip
    return dict(row), edit


def _example(s: Session, ds: ReviewDataset, e: ReviewExample) -> ExampleInfo:
    row, edit = _opened(s, ds, e)
    original = _text(row["messages"][-1].get("content"))
    return ExampleInfo(ds.id, e.row, e.source, e.capture_id, e.teacher, row["messages"][:-1],
                       original, original if edit is None else edit, edit is not None,
                       e.state, e.reviewer, e.updated)  # fmt: skip


def list_examples(
    store: Store,
    dataset: str,
    *,
    state: str | None = None,
    search: str | None = None,
    after: int = -1,
    limit: int = 50,
) -> ExamplePage:
    """A page of examples in row order after row ``after`` (keyset paging: as fast on
    the last page as on the first)."""
    with store.session() as s:
        ds = _dataset(s, dataset)
        where = _filters(s, ds, state, search)
        total = int(s.scalar(select(func.count()).select_from(ReviewExample).where(*where)) or 0)
        found = list(s.scalars(select(ReviewExample).where(*where, ReviewExample.row > after)
                               .order_by(ReviewExample.row).limit(limit + 1)))  # fmt: skip
        shown = [_example(s, ds, e) for e in found[:limit]]
        return ExamplePage(shown, len(found) > limit, total)


def _get(s: Session, ds: ReviewDataset, row: int) -> ReviewExample:
    e = s.get(ReviewExample, (ds.id, row))
    if e is None:
        raise ReviewNotFound(f"dataset {ds.id} has no row {row}", param="row")
    return e


def get_example(store: Store, dataset: str, row: int) -> ExampleInfo:
    with store.session() as s:
        ds = _dataset(s, dataset)
        return _example(s, ds, _get(s, ds, row))


def edit_answer(store: Store, dataset: str, row: int, answer: str, *, actor: str) -> ExampleInfo:
    """Replace the answer training gets (the original stays); the original text again
    clears the edit. Editing does not approve: the state stays as it was."""
    if not answer.strip():
        raise InvalidRequestError("answer: an edited answer cannot be empty", param="answer")
    with store.session() as s:
        ds = _dataset(s, dataset)
        e = _get(s, ds, row)
        original = _example(s, ds, e).original
        e.answer = None if answer == original else keyring(s).seal_text(
            s, ds.tenant_id, "review_examples.answer", f"{ds.id}#{row}", answer
        )  # fmt: skip
        e.reviewer, e.updated = actor, now()
        audit(s, actor, "review.edit", dataset=ds.id, row=row, edited=e.answer is not None,
              chars=len(answer))  # fmt: skip
        s.flush()
        return _example(s, ds, e)


def set_state(
    store: Store,
    dataset: str,
    state: str,
    *,
    actor: str,
    rows: list[int] | None = None,
    where_state: str | None = None,
    search: str | None = None,
) -> int:
    """Set ``state`` on the given ``rows``, or (``rows=None``) on every row matching
    ``where_state`` and ``search``, in one statement; returns how many rows it set."""
    if state not in STATES:
        raise InvalidRequestError(f"state: one of {', '.join(STATES)}", param="state")
    with store.session() as s:
        ds = _dataset(s, dataset)
        where = _filters(s, ds, where_state, search)
        if rows is not None:
            if not rows:
                raise InvalidRequestError("rows: name at least one row", param="rows")
            wanted = sorted(set(rows))
            found = set(s.scalars(select(ReviewExample.row).where(
                ReviewExample.dataset_id == ds.id, ReviewExample.row.in_(wanted))))  # fmt: skip
            missing = [r for r in wanted if r not in found]
            if missing:
                raise ReviewNotFound(
                    f"dataset {ds.id} has no row(s) {', '.join(map(str, missing[:10]))}",
                    param="rows",
                )
            where.append(ReviewExample.row.in_(wanted))
        done = s.execute(
            update(ReviewExample).where(*where).values(state=state, reviewer=actor, updated=now()),
            execution_options={"synchronize_session": False},
        ).rowcount  # type: ignore[attr-defined]
        detail: dict[str, Any] = {"dataset": ds.id, "count": int(done)}
        if rows is not None and len(rows) <= _AUDITED_ROWS:
            detail["rows"] = sorted(set(rows))
        elif rows is None:  # the filter, never the searched words (they may be personal)
            detail.update(all_matching=True, where_state=where_state, searched=bool(search))
        audit(s, actor, _VERBS[state], **detail)
        return int(done)


def _exported_before(s: Session, dataset_id: str, out: Path) -> bool:
    """Whether ``out`` is where this dataset was exported before (the audit log says;
    exports are few, so their records are read, not indexed)."""
    details = s.scalars(select(AuditEntry.detail).where(AuditEntry.action == "review.export"))
    return any(d.get("dataset") == dataset_id and d.get("path") == str(out) for d in details)


def export_approved(
    store: Store, dataset: str, out: Path, *, actor: str, replace_own_only: bool = False
) -> int:
    """Write the approved rows, edits applied, to ``out`` (JSONL, 0600); returns how many.
    ``replace_own_only``: refuse to replace a file that is not an earlier export of this
    dataset (what the HTTP API asks: an admin key must not overwrite the server's files).

    The file is registered as derived from its captures, so an erasure reaches it too."""
    out = Path(out).expanduser().resolve()
    with store.session() as s:
        ds = _dataset(s, dataset)
        if replace_own_only and out.exists() and not _exported_before(s, ds.id, out):
            raise InvalidRequestError(
                f"{out} exists and is not an export of dataset {ds.id}: choose a new file",
                param="out",
            )
        lines = []
        for e in s.scalars(select(ReviewExample).where(
            ReviewExample.dataset_id == ds.id, ReviewExample.state == "approved"
        ).order_by(ReviewExample.row)):  # fmt: skip
            row, edit = _opened(s, ds, e)
            if edit is not None:
                row["messages"][-1] = {**row["messages"][-1], "content": edit}
                row["metadata"] = {**(row.get("metadata") or {}), "review": "edited"}
            lines.append(json.dumps(row, ensure_ascii=False) + "\n")
        dataset_id = ds.id
    try:
        atomic_write(out, "".join(lines))
    except OSError as exc:
        raise InvalidRequestError(f"cannot write {out}: {exc.strerror or exc}") from None
    register_dataset(store, out, actor=actor, source={"review": dataset_id})
    with store.session() as s:
        audit(s, actor, "review.export", dataset=dataset_id, path=str(out), rows=len(lines),
              sha256=file_sha256(out))  # fmt: skip
    return len(lines)
