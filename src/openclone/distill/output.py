"""The dataset being written, and the state beside it that makes a run resumable.

Rows are appended and flushed one at a time, so an interrupted run loses at most the
requests in flight. ``OUT.state.json`` (``OUT`` being the dataset's full name) holds what
the rows cannot tell: drop counts, tokens, cost, time, the prompts already decided. On a
re-run the dataset itself is the truth about what was kept; a half-written last line (a
crash mid-write) is cut off. An exclusive lock keeps two runs from writing one file.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from openclone.distill.config import DistillError
from openclone.distill.teacher import Account
from openclone.files import atomic_write

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory lock
    fcntl = None  # type: ignore[assignment]

__all__ = ["DistillOutput", "RunState", "state_path"]

STATE_VERSION = 1
_SAVE_EVERY = 2.0  # seconds between state writes while running; always on exit


def state_path(out: Path) -> Path:
    return out.with_name(out.name + ".state.json")


@dataclass
class RunState:
    mode: str  # "self-instruct" | "prompts"
    teacher: str
    source: dict[str, Any]
    dropped: Counter[str] = field(default_factory=Counter)
    account: Account = field(default_factory=Account)
    written: int = 0  # tasks read out of the teacher's replies (self-instruct)
    unused: int = 0  # tasks that passed the filters but were not needed, or were interrupted
    decided: list[str] = field(default_factory=list)  # prompt ids dropped for good (prompts)
    wall_seconds: float = 0.0
    sessions: int = 0
    created: float = field(default_factory=time.time)
    status: str = "running"
    kept: int = 0  # rows in the dataset at the last save

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "mode": self.mode,
            "teacher": self.teacher,
            "source": self.source,
            "dropped": dict(self.dropped),
            "account": self.account.to_dict(),
            "written": self.written,
            "unused": self.unused,
            "decided": self.decided,
            "wall_seconds": self.wall_seconds,
            "sessions": self.sessions,
            "created": self.created,
            "status": self.status,
            "kept": self.kept,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        return cls(
            mode=data["mode"],
            teacher=data["teacher"],
            source=data.get("source", {}),
            dropped=Counter(data.get("dropped", {})),
            account=Account.from_dict(data.get("account", {})),
            written=data.get("written", 0),
            unused=data.get("unused", 0),
            decided=list(data.get("decided", [])),
            wall_seconds=data.get("wall_seconds", 0.0),
            sessions=data.get("sessions", 0),
            created=data.get("created", time.time()),
            status=data.get("status", "running"),
            kept=data.get("kept", 0),
        )


class DistillOutput:
    """``OUT`` opened for appending, its rows' metadata read back, and its state."""

    def __init__(
        self, path: Path, state: RunState, rows: list[dict[str, Any]], file: IO[bytes]
    ) -> None:
        self.path = path
        self.state = state
        self.rows = rows  # each kept row's "metadata" (earlier sessions' and this one's)
        self.resumed = len(rows)
        self.on_change: Callable[[], None] | None = None
        self._file = file
        self._started = time.monotonic()
        self._saved = 0.0

    @property
    def kept(self) -> int:
        return len(self.rows)

    @classmethod
    def open(cls, path: Path, mode: str, teacher: str, source: dict[str, Any]) -> DistillOutput:
        """Start ``path``, or continue the run already in it; DistillError if it isn't one."""
        path = Path(path)
        state_file = state_path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            file = path.open("ab+")
        except OSError as exc:
            raise DistillError(f"cannot write {path}: {exc.strerror or exc}") from exc
        try:
            _lock(file, path)
            size = file.seek(0, os.SEEK_END)
            if size and not state_file.is_file():
                raise DistillError(
                    f"{path} already exists and is not a distill run in progress (no "
                    f"{state_file.name} beside it); choose another --out or remove it"
                )
            state = RunState(mode, teacher, source)
            rows: list[dict[str, Any]] = []
            previous = _read_state(state_file) if state_file.is_file() else None
            same = previous is not None and (previous.mode, previous.teacher) == (mode, teacher)
            if previous is not None and size and not same:
                raise DistillError(
                    f"{path} holds a {previous.mode} run with teacher {previous.teacher!r}; "
                    f"continue it with the same settings or choose another --out"
                )
            # An empty dataset continues an early interruption, unless its state counted
            # rows (the dataset was removed to start over) or was for another teacher.
            if previous is not None and same and (size or not previous.kept):
                state = previous
                rows = _read_rows(path, file)
            state.sessions += 1
            state.status = "running"
        except BaseException:
            file.close()
            raise
        return cls(path, state, rows, file)

    def append(self, row: dict[str, Any]) -> None:
        line = json.dumps(row, ensure_ascii=False) + "\n"
        self._file.write(line.encode("utf-8"))
        self._file.flush()
        self.rows.append(row.get("metadata", {}))
        self._changed()

    def drop(self, reason: str, n: int = 1) -> None:
        if n:
            self.state.dropped[reason] += n
            self._changed()

    def _changed(self) -> None:
        if time.monotonic() - self._saved >= _SAVE_EVERY:
            self.save()
        if self.on_change is not None:
            self.on_change()

    def elapsed(self) -> float:
        """Wall seconds over every session of this run, this one so far included."""
        return self.state.wall_seconds + time.monotonic() - self._started

    def save(self) -> None:
        # fsync the rows first: the state must never count rows the disk does not hold.
        self._file.flush()
        os.fsync(self._file.fileno())
        self.state.kept = self.kept
        data = self.state.to_dict()
        data["wall_seconds"] = self.elapsed()
        atomic_write(state_path(self.path), json.dumps(data, ensure_ascii=False, indent=1) + "\n")
        self._saved = time.monotonic()

    def close(self, status: str) -> None:
        """Record the final state; the lock goes with the file."""
        self.state.status = status
        try:
            self.save()
            self.state.wall_seconds = self.elapsed()
            self._started = time.monotonic()
        finally:
            self._file.close()


def _lock(file: IO[bytes], path: Path) -> None:
    if fcntl is None:  # pragma: no cover
        return
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise DistillError(f"another distill run is writing {path}") from None


def _read_state(state_file: Path) -> RunState:
    try:
        data = json.loads(state_file.read_text(encoding="utf-8"))
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unknown version {data.get('version')!r}")
        return RunState.from_dict(data)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DistillError(f"{state_file}: cannot continue the run: {exc}") from exc


def _read_rows(path: Path, file: IO[bytes]) -> list[dict[str, Any]]:
    file.seek(0)
    data = file.read()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        # The process died writing the last row: that row was never counted, drop it.
        file.truncate(end)
        data = data[:end]
    file.seek(0, os.SEEK_END)
    rows = []
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise DistillError(f"{path}, line {number}: not a distill row: {exc}") from exc
        if not isinstance(row, dict) or not isinstance(row.get("messages"), list):
            raise DistillError(f'{path}, line {number}: not a distill row (no "messages")')
        meta = row.get("metadata")
        rows.append(meta if isinstance(meta, dict) else {})
    return rows
