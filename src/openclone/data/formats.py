"""Instruction datasets on disk, read for their instruction strings and written back as-is.

Accepted layouts, told apart by their first character and by each row's keys:

* Alpaca JSON: one JSON array of ``{"instruction", "input", "output"}`` objects;
* JSONL of Alpaca rows, or of any object with a string field named by ``field``;
* OpenAI chat JSONL: ``{"messages": [...]}``; the instruction is the first user message
  (text parts of a content list are joined by newlines);
* ShareGPT JSONL: ``{"conversations": [{"from": "human", "value": ...}, ...]}``; the first
  human turn.

A row's own ``field`` wins over its messages. Rows are written back unchanged: JSONL lines
byte for byte, Alpaca JSON as the same objects re-serialised. Writes are atomic, so the
output may be the input file itself.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from openclone.errors import OpenCloneError

__all__ = ["DatasetFormatError", "InstructionFile", "instruction_of", "read_instructions"]


class DatasetFormatError(OpenCloneError, ValueError):
    """A dataset file that cannot be read; the message names the file, the row and why."""


def _text_of(content: Any) -> str | None:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return None
    texts: list[str] = []
    for part in content:  # OpenAI content parts: the text ones count, images do not
        if isinstance(part, dict) and part.get("type") == "text":
            text = part.get("text")
            if not isinstance(text, str):
                return None
            texts.append(text)
    return "\n".join(texts)


def instruction_of(row: Any, field: str = "instruction") -> str:
    """The instruction string of one parsed row; ValueError says why there is none."""
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    if field in row:
        value = row[field]
        if not isinstance(value, str):
            raise ValueError(f"field {field!r} is {type(value).__name__}, not a string")
        return value
    turns: Any = row.get("messages")
    users: tuple[str, ...] = ("user",)
    speaker, said = "role", "content"
    if turns is None and "conversations" in row:
        turns, speaker, said, users = row["conversations"], "from", "value", ("human", "user")
    if turns is None:
        raise ValueError(f"no {field!r} field and no chat messages")
    if not isinstance(turns, list):
        raise ValueError("chat messages are not a list")
    for turn in turns:
        if isinstance(turn, dict) and turn.get(speaker) in users:
            text = _text_of(turn.get(said))
            if text is None:
                raise ValueError("the first user message has no text content")
            return text
    raise ValueError("the chat has no user message")


@dataclass
class InstructionFile:
    """A dataset read from ``path``: its rows as they were and their instruction strings."""

    path: Path
    layout: Literal["json", "jsonl"]
    rows: list[Any]  # JSONL: each line's bytes, without its newline; JSON: the objects
    texts: list[str]

    def write(self, out: Path, keep: Sequence[bool]) -> int:
        """Write the rows whose ``keep`` is true to ``out``, in order; returns how many."""
        if len(keep) != len(self.rows):
            raise ValueError(f"{len(keep)} decisions for {len(self.rows)} rows")
        kept = [row for row, wanted in zip(self.rows, keep, strict=True) if wanted]
        if self.layout == "jsonl":
            data = b"".join(line + b"\n" for line in kept)
        else:
            data = (json.dumps(kept, ensure_ascii=False, indent=2) + "\n").encode()
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        # Write beside the target and rename over it: a crash never leaves half a file,
        # and out may be the input.
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return len(kept)


def read_instructions(path: Path, field: str = "instruction") -> InstructionFile:
    """Read a dataset file (see the module doc for the layouts) and its instructions."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetFormatError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark
        data = data[3:]
    if data.lstrip()[:1] == b"[":
        return _read_json(path, data, field)
    rows: list[Any] = []
    texts: list[str] = []
    # Split on "\n" only: JSON strings may hold U+2028 or NEL, which splitlines() would
    # break on; a trailing "\r" stays in the line and is written back as it was.
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            texts.append(instruction_of(row, field))
        except (ValueError, UnicodeDecodeError) as exc:
            raise DatasetFormatError(f"{path}, line {number}: {exc}") from exc
        rows.append(line)
    return InstructionFile(path, "jsonl", rows, texts)


def _read_json(path: Path, data: bytes, field: str) -> InstructionFile:
    try:
        rows = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DatasetFormatError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(rows, list):
        raise DatasetFormatError(f"{path}: expected a JSON array of rows")
    texts = []
    for number, row in enumerate(rows):
        try:
            texts.append(instruction_of(row, field))
        except ValueError as exc:
            raise DatasetFormatError(f"{path}, row {number}: {exc}") from exc
    return InstructionFile(path, "json", rows, texts)
