"""``openclone import`` of files: OpenAI fine-tuning JSONL and OpenAI Evals JSONL, as
OpenClone datasets.

Each row goes, by its shape, to one dataset file of the import's directory:

* a supervised chat row, ``{"messages": [...], "tools": [...]}`` (``weight`` on assistant
  messages and the tools kept as they are), checked as OpenAI checks a fine-tuning upload,
  to ``NAME.jsonl`` — the chat JSONL ``openclone train`` reads;
* a preference (DPO) row, ``{"input": {"messages": [...]}, "preferred_output": [...],
  "non_preferred_output": [...]}``, to ``NAME.preference.jsonl``, kept for later: OpenClone
  trains supervised only;
* an Evals row, ``{"input": "..." | [messages], "ideal": "..." | ["...", ...]}``, to
  ``NAME.eval.jsonl`` as a chat row whose last assistant message is the reference (the first
  ideal; all of them in ``metadata.ideal``) — an eval set ``openclone eval`` reads.

Importing is idempotent: a row whose content (its canonical JSON) is in the dataset already
is not added again. A bad row is rejected with its file and line number and the rest go
on; with ``strict``, one bad row means nothing is written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openclone.data.openai_files import _fine_tune_row
from openclone.files import atomic_write

__all__ = [
    "KINDS",
    "Counts",
    "ImportReport",
    "Rejected",
    "Rows",
    "classify",
    "dataset_paths",
    "import_data",
    "import_files",
    "import_rows",
    "row_key",
]

# What an import can bring, in the order a report lists them.
KINDS = ("completions", "chat", "preference", "eval", "fine_tunes")
_SUFFIX = {"chat": ".jsonl", "preference": ".preference.jsonl", "eval": ".eval.jsonl"}


@dataclass
class Rejected:
    where: str  # "train.jsonl, line 3", or a source id
    reason: str


@dataclass
class Counts:
    added: int = 0
    existing: int = 0  # there already (an earlier import), or twice in this one
    rejected: int = 0


@dataclass
class ImportReport:
    """What one import did, per kind (see :data:`KINDS`)."""

    counts: dict[str, Counts] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)
    outputs: dict[str, list[str]] = field(default_factory=dict)  # kind -> files written
    notes: list[str] = field(default_factory=list)  # what could not be done, and why

    def count(self, kind: str) -> Counts:
        return self.counts.setdefault(kind, Counts())

    def reject(self, kind: str, where: str, reason: str) -> None:
        self.count(kind).rejected += 1
        self.rejected.append(Rejected(where, reason))

    def wrote(self, kind: str, path: Path) -> None:
        paths = self.outputs.setdefault(kind, [])
        if str(path) not in paths:
            paths.append(str(path))

    @property
    def accepted(self) -> int:
        """Rows imported now or before: what a re-run finds there already counts."""
        return sum(c.added + c.existing for c in self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "counts": {k: vars(self.counts[k]) for k in sorted(self.counts, key=_kind_order)},
            "rejected": [vars(r) for r in self.rejected],
            "outputs": self.outputs,
            "notes": self.notes,
        }


def _kind_order(kind: str) -> int:
    return KINDS.index(kind) if kind in KINDS else len(KINDS)


def row_key(row: Any) -> str:
    """A row's identity for idempotency: the hash of its canonical JSON."""
    text = json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def dataset_paths(out: Path, name: str) -> dict[str, Path]:
    """The dataset files of ``name`` in ``out``, by kind."""
    return {kind: Path(out) / f"{name}{suffix}" for kind, suffix in _SUFFIX.items()}


@dataclass
class Rows:
    """Rows to add to one dataset file, with the keys of those it holds already."""

    path: Path
    keys: set[str]
    kind: str = "chat"
    new: list[Any] = field(default_factory=list)

    @classmethod
    def of(cls, path: Path, kind: str = "chat") -> Rows:
        keys = set()
        if path.is_file():
            for line in path.read_bytes().split(b"\n"):
                if line.strip():
                    try:
                        keys.add(row_key(json.loads(line)))
                    except ValueError:
                        continue  # a line someone broke by hand is not ours to judge
        return cls(path, keys, kind)

    def add(self, row: Any) -> bool:
        """Queue ``row`` unless the file (or this import) has it; True if it is new."""
        key = row_key(row)
        if key in self.keys:
            return False
        self.keys.add(key)
        self.new.append(row)
        return True

    def write(self) -> None:
        if not self.new:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        old = self.path.read_bytes() if self.path.is_file() else b""
        if old and not old.endswith(b"\n"):
            old += b"\n"
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.new)
        atomic_write(self.path, old + lines.encode())


def _lines(data: bytes, name: str) -> Iterator[tuple[str, Any, str | None]]:
    """(where, parsed row or None, why it is not a row) for every non-blank line."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for number, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        where = f"{name}, line {number}"
        try:
            yield where, json.loads(raw.decode("utf-8")), None
        except UnicodeDecodeError:
            yield where, None, "the line is not UTF-8 text"
        except json.JSONDecodeError as exc:
            yield where, None, f"not valid JSON ({exc.msg} at column {exc.colno})"


def classify(row: Any) -> tuple[str, Any] | str:
    """``(kind, dataset row)`` for an importable row; otherwise why it is not one."""
    if not isinstance(row, dict):
        return "each line must be a JSON object"
    if "preferred_output" in row or "non_preferred_output" in row:
        problem = _preference_problem(row)
        return problem or ("preference", row)
    if "ideal" in row and "input" in row:
        return _eval_row(row)
    if "messages" in row:
        problem = _fine_tune_row(row, 0)
        return problem.rstrip(".") if problem else ("chat", row)
    return (
        "not a fine-tuning row ('messages'), a preference row ('preferred_output') or an "
        "Evals row ('input' and 'ideal')"
    )


def _preference_problem(row: dict[str, Any]) -> str | None:
    given = row.get("input")
    messages = given.get("messages") if isinstance(given, dict) else None
    if not isinstance(messages, list) or not messages:
        return "a preference row needs 'input.messages', a non-empty list"
    for name in ("preferred_output", "non_preferred_output"):
        out = row.get(name)
        if not isinstance(out, list) or not out:
            return f"a preference row needs '{name}', a non-empty list of assistant messages"
        if not all(isinstance(m, dict) and m.get("role") == "assistant" for m in out):
            return f"'{name}' must hold assistant messages only"
    return None


def _eval_row(row: dict[str, Any]) -> tuple[str, Any] | str:
    given, ideal = row["input"], row["ideal"]
    if isinstance(given, str):
        messages: list[Any] = [{"role": "user", "content": given}]
    elif (
        isinstance(given, list)
        and given
        and all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in given)
    ):
        messages = list(given)
    else:
        return "'input' must be a string or a non-empty list of messages with roles"
    ideals = [ideal] if isinstance(ideal, str) else ideal
    if not isinstance(ideals, list) or not ideals or not all(isinstance(i, str) for i in ideals):
        return "'ideal' must be a string or a non-empty list of strings"
    extra = {k: v for k, v in row.items() if k not in ("input", "ideal")}
    meta = extra.pop("metadata", None)
    metadata = {**(meta if isinstance(meta, dict) else {}), "ideal": ideals}
    chat = {**extra, "messages": [*messages, {"role": "assistant", "content": ideals[0]}]}
    chat["metadata"] = metadata
    return "eval", chat


def import_rows(
    rows: Iterator[tuple[str, Any, str | None]],
    targets: dict[str, Rows],
    report: ImportReport,
) -> None:
    """Sort ``rows`` into ``targets`` by kind, counting and rejecting as they go."""
    for where, row, problem in rows:
        outcome = classify(row) if problem is None else problem
        if isinstance(outcome, str):
            report.reject(_rejected_kind(row), where, outcome)
            continue
        kind, kept = outcome
        if targets[kind].add(kept):
            report.count(kind).added += 1
        else:
            report.count(kind).existing += 1


def _rejected_kind(row: Any) -> str:
    if isinstance(row, dict) and ("preferred_output" in row or "non_preferred_output" in row):
        return "preference"
    if isinstance(row, dict) and "ideal" in row:
        return "eval"
    return "chat"


def import_files(
    paths: list[Path],
    out: Path,
    *,
    name: str | None = None,
    strict: bool = False,
    report: ImportReport | None = None,
) -> ImportReport:
    """Import each file into the datasets ``out/NAME{,.preference,.eval}.jsonl``; ``NAME`` is
    ``name``, else the file's stem. A file that cannot be read is a rejected "row" too."""
    report = report or ImportReport()
    pending: dict[Path, Rows] = {}
    for path in paths:
        targets = {
            kind: pending.get(p) or pending.setdefault(p, Rows.of(p, kind))
            for kind, p in dataset_paths(out, name or _stem(path)).items()
        }
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            report.reject("chat", str(path), f"cannot read: {exc.strerror or exc}")
            continue
        import_rows(_lines(data, Path(path).name), targets, report)
    if strict and report.rejected:
        report.notes.append("--strict: rows were rejected, so nothing was written")
        return report
    for target in pending.values():
        if target.new:
            target.write()
            report.wrote(target.kind, target.path)
    return report


def import_data(
    data: bytes, source: str, out: Path, name: str, report: ImportReport
) -> dict[str, Path]:
    """:func:`import_files` for content already in memory (a server's file); ``source``
    names it in rejections. Returns the dataset files that hold its rows, by kind."""
    paths = dataset_paths(out, name)
    targets = {kind: Rows.of(p, kind) for kind, p in paths.items()}
    import_rows(_lines(data, source), targets, report)
    held = {}
    for kind, target in targets.items():
        if target.new:
            target.write()
            report.wrote(kind, target.path)
        if target.path.is_file():
            held[kind] = target.path
    return held


def _stem(path: Path) -> str:
    name = Path(path).name
    for suffix in (*_SUFFIX.values(), ".json", ".txt"):
        if name.endswith(suffix):
            return name[: -len(suffix)] or "dataset"
    return name or "dataset"
