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

:func:`convert_dataset` rewrites a file from any of these layouts into another, through
the OpenAI chat row (see "conversion between layouts" below).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from openclone.errors import OpenCloneError
from openclone.files import atomic_write

__all__ = [
    "LAYOUTS",
    "ConvertResult",
    "DatasetFormatError",
    "InstructionFile",
    "Layout",
    "RowSkipped",
    "alpaca_prompt",
    "convert_dataset",
    "from_chat",
    "instruction_of",
    "iter_dataset_rows",
    "parse_dataset_rows",
    "read_instructions",
    "to_chat",
]


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
        atomic_write(Path(out), data)
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


# ---- conversion between layouts ----------------------------------------------------------
#
# Every layout goes through the OpenAI chat row, the one format the rest of OpenClone reads.
# Alpaca rows use the common extension for what plain Alpaca cannot hold (``system`` and a
# ``history`` of earlier [user, assistant] pairs); a chat row keeps the Alpaca
# ``instruction``/``input`` split in its ``metadata``, so Alpaca -> chat -> Alpaca is
# lossless. Keys a layout does not know (``id``, ``metadata``…) travel along unchanged.

Layout = Literal["openai", "alpaca", "sharegpt"]
LAYOUTS: tuple[Layout, ...] = ("openai", "alpaca", "sharegpt")

_ALPACA_KEYS = ("instruction", "input", "output", "system", "history")
_SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "model": "assistant",
}
_SHAREGPT_SPEAKERS = {"system": "system", "user": "human", "assistant": "gpt"}


class RowSkipped(ValueError):
    """A row the target layout cannot hold; ``reason`` is the short, countable why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def alpaca_prompt(instruction: str, input: str = "") -> str:
    """The user turn of an Alpaca row: the instruction, then its input after a blank line."""
    return f"{instruction}\n\n{input}" if input else instruction


def iter_dataset_rows(path: Path) -> Iterator[tuple[str, Any]]:
    """``(where, row)`` for each row of a JSON array or JSONL file; ``where`` names the row.

    A line that is not JSON is a :class:`DatasetFormatError` naming the file and line.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetFormatError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return parse_dataset_rows(data, str(path))


def parse_dataset_rows(data: bytes, name: str) -> Iterator[tuple[str, Any]]:
    """:func:`iter_dataset_rows` for bytes already read; ``name`` stands for the file."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if data.lstrip()[:1] == b"[":
        try:
            rows = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DatasetFormatError(f"{name}: not valid JSON: {exc}") from exc
        for number, row in enumerate(rows):
            yield f"{name}, row {number}", row
        return
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DatasetFormatError(f"{name}, line {number}: not valid JSON: {exc}") from exc
        yield f"{name}, line {number}", row


def _text(content: Any) -> str:
    text = _text_of(content)
    if text is None:
        raise RowSkipped("non-text content")
    if isinstance(content, list) and any(
        isinstance(p, dict) and p.get("type") != "text" for p in content
    ):
        raise RowSkipped("non-text content")
    return text


def to_chat(row: Any) -> dict[str, Any]:
    """Any supported row as an OpenAI chat row ``{"messages": [...], ...}``; ValueError if none."""
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    if "messages" in row:
        messages = row["messages"]
        if not isinstance(messages, list) or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages
        ):
            raise ValueError('"messages" must be a list of objects with a "role"')
        return dict(row)
    if "conversations" in row:
        return _sharegpt_to_chat(row)
    if "instruction" in row:
        return _alpaca_to_chat(row)
    raise ValueError('not a chat ("messages"), ShareGPT ("conversations") or Alpaca row')


def _str_field(row: dict[str, Any], key: str) -> str:
    value = row.get(key) or ""
    if not isinstance(value, str):
        raise ValueError(f"field {key!r} is {type(value).__name__}, not a string")
    return value


def _alpaca_to_chat(row: dict[str, Any]) -> dict[str, Any]:
    instruction, input = _str_field(row, "instruction"), _str_field(row, "input")
    messages: list[dict[str, Any]] = []
    if system := _str_field(row, "system"):
        messages.append({"role": "system", "content": system})
    history = row.get("history") or []
    if not isinstance(history, list):
        raise ValueError('"history" must be a list of [user, assistant] pairs')
    for pair in history:
        if not (
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(s, str) for s in pair)
        ):
            raise ValueError('"history" must be a list of [user, assistant] pairs')
        messages += [
            {"role": "user", "content": pair[0]},
            {"role": "assistant", "content": pair[1]},
        ]
    messages.append({"role": "user", "content": alpaca_prompt(instruction, input)})
    if "output" in row:
        messages.append({"role": "assistant", "content": _str_field(row, "output")})
    chat: dict[str, Any] = {k: v for k, v in row.items() if k not in _ALPACA_KEYS}
    chat["messages"] = messages
    meta = chat.get("metadata")
    meta = dict(meta) if isinstance(meta, dict) else {}
    chat["metadata"] = {**meta, "instruction": instruction, "input": input}
    return chat


def _sharegpt_to_chat(row: dict[str, Any]) -> dict[str, Any]:
    turns = row["conversations"]
    if not isinstance(turns, list):
        raise ValueError('"conversations" must be a list')
    messages: list[dict[str, Any]] = []
    if isinstance(row.get("system"), str) and row["system"]:
        messages.append({"role": "system", "content": row["system"]})
    for turn in turns:
        speaker = turn.get("from") if isinstance(turn, dict) else None
        role = _SHAREGPT_ROLES.get(str(speaker).lower())
        if role is None:
            raise RowSkipped(f"speaker {speaker!r}")
        value = turn.get("value")
        if not isinstance(value, str):
            raise ValueError('a ShareGPT turn has no string "value"')
        messages.append({"role": role, "content": value})
    chat = {k: v for k, v in row.items() if k not in ("conversations", "system")}
    chat["messages"] = messages
    return chat


def _plain_turns(chat: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """(system text, [(role, text)]) of a chat of plain text turns; RowSkipped otherwise."""
    system, turns = "", []
    for i, message in enumerate(chat["messages"]):
        role = message["role"]
        if role in ("tool", "function") or message.get("tool_calls"):
            raise RowSkipped("tool calls")
        text = _text(message.get("content"))
        if role in ("system", "developer"):
            if i != 0:
                raise RowSkipped("system message after the first turn")
            system = text
        elif role in ("user", "assistant"):
            turns.append((role, text))
        else:
            raise RowSkipped(f"role {role!r}")
    return system, turns


def from_chat(chat: dict[str, Any], layout: Layout) -> dict[str, Any]:
    """An OpenAI chat row in ``layout``; :class:`RowSkipped` when that layout cannot hold it."""
    if layout == "openai":
        return chat
    system, turns = _plain_turns(chat)
    extras = {k: v for k, v in chat.items() if k != "messages"}
    if layout == "sharegpt":
        conversation = [{"from": "system", "value": system}] if system else []
        conversation += [{"from": _SHAREGPT_SPEAKERS[r], "value": t} for r, t in turns]
        return {**extras, "conversations": conversation}
    if turns and turns[-1][0] == "user":
        turns.append(("assistant", ""))  # a prompt without an answer yet
    roles = [r for r, _ in turns]
    if not turns or roles != ["user", "assistant"] * (len(turns) // 2):
        raise RowSkipped("turns do not alternate user, assistant")
    prompt = turns[-2][1]
    meta = extras.pop("metadata", None)
    meta = dict(meta) if isinstance(meta, dict) else meta
    instruction, input = prompt, ""
    if isinstance(meta, dict):
        saved, saved_input = meta.get("instruction"), meta.get("input", "")
        if (
            isinstance(saved, str)
            and isinstance(saved_input, str)
            and alpaca_prompt(saved, saved_input) == prompt
        ):
            instruction, input = saved, saved_input
            meta.pop("instruction")
            meta.pop("input", None)
    row: dict[str, Any] = {**extras, "instruction": instruction, "input": input}
    row["output"] = turns[-1][1]
    if system:
        row["system"] = system
    if len(turns) > 2:
        row["history"] = [[turns[i][1], turns[i + 1][1]] for i in range(0, len(turns) - 2, 2)]
    if meta:
        row["metadata"] = meta
    return row


@dataclass
class ConvertResult:
    rows: int
    written: int
    skipped: dict[str, int]


def convert_dataset(src: Path, out: Path, layout: Layout) -> ConvertResult:
    """Rewrite ``src`` (any supported layout) as ``layout``; rows it cannot hold are counted.

    A ``.json`` output is one JSON array (as Alpaca ships), anything else JSONL. The write is
    atomic, so ``out`` may be ``src``.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    converted: list[dict[str, Any]] = []
    skipped: dict[str, int] = {}
    total = 0
    for where, row in iter_dataset_rows(src):
        total += 1
        try:
            converted.append(from_chat(to_chat(row), layout))
        except RowSkipped as exc:
            skipped[exc.reason] = skipped.get(exc.reason, 0) + 1
        except ValueError as exc:
            raise DatasetFormatError(f"{where}: {exc}") from exc
    out = Path(out)
    if out.suffix.lower() == ".json":
        data = json.dumps(converted, ensure_ascii=False, indent=2) + "\n"
    else:
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in converted)
    # Out may be the input: the rename comes after the whole file is read.
    atomic_write(out, data)
    return ConvertResult(total, len(converted), skipped)
