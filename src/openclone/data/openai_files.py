"""The JSONL files of OpenAI's Files API, checked the way OpenAI checks them on upload.

A ``fine-tune`` file holds chat examples, ``{"messages": [...]}`` per line, each with a
known role on every message and at least one assistant message to learn from. A ``batch``
file holds requests, ``{"custom_id", "method": "POST", "url", "body"}`` per line, with
``custom_id`` unique in the file. The first bad line is refused with a 400 naming the line
(1-based, as an editor counts) and what is wrong with it; blank lines are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from openclone.errors import InvalidRequestError
from openclone.schema import ChatMessage

__all__ = [
    "BATCH_URLS",
    "MAX_BATCH_REQUESTS",
    "UPLOAD_PURPOSES",
    "FileFormatError",
    "check_upload",
    "jsonl_rows",
]

UPLOAD_PURPOSES = ("fine-tune", "batch")
BATCH_URLS = ("/v1/chat/completions", "/v1/responses", "/v1/embeddings")
MAX_BATCH_REQUESTS = 50_000  # OpenAI's limit per batch file
_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


class FileFormatError(InvalidRequestError):
    default_code = "invalid_file_format"

    def __init__(self, purpose: str, line: int | None, problem: str) -> None:
        where = f" Line {line}: " if line is not None else " "
        super().__init__(
            f"Invalid file format for purpose '{purpose}'.{where}{problem}", param="file"
        )
        self.line = line


def jsonl_rows(data: bytes) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) for every non-blank line; ``ValueError`` names the line."""
    for number, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(number, "the line is not UTF-8 text") from None
        try:
            yield number, json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(number, f"not valid JSON ({exc.msg} at column {exc.colno})") from None


def check_upload(purpose: str, data: bytes) -> int:
    """Check ``data`` as a file of ``purpose``; the number of rows, or :class:`FileFormatError`."""
    check = {"fine-tune": _fine_tune_row, "batch": _BatchRows().check}[purpose]
    rows = 0
    try:
        for number, row in jsonl_rows(data):
            problem = check(row, number)
            if problem:
                raise FileFormatError(purpose, number, problem)
            rows += 1
            if purpose == "batch" and rows > MAX_BATCH_REQUESTS:
                raise FileFormatError(
                    purpose, number, f"a batch file holds at most {MAX_BATCH_REQUESTS} requests."
                )
    except ValueError as exc:
        number, problem = exc.args
        raise FileFormatError(purpose, number, f"{problem}.") from None
    if rows == 0:
        raise FileFormatError(purpose, None, "The file has no JSONL rows.")
    return rows


def _fine_tune_row(row: Any, number: int) -> str | None:
    if not isinstance(row, dict):
        return "each line must be a JSON object."
    if "messages" not in row:
        if "prompt" in row or "completion" in row:
            return (
                "prompt/completion rows are the legacy format; chat models are fine-tuned on "
                '{"messages": [...]} rows.'
            )
        if "preferred_output" in row:
            return "preference (DPO) rows are not supported; only supervised chat rows are."
        return "missing required key 'messages'."
    messages = row["messages"]
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list of messages."
    learns = False
    for i, message in enumerate(messages):
        problem = _message_problem(message, f"messages[{i}]")
        if problem:
            return problem
        learns = learns or (message["role"] == "assistant" and message.get("weight", 1) == 1)
    if not learns:
        return "no assistant message to learn from (each example needs one, with weight 1)."
    if "tools" in row and not isinstance(row["tools"], list):
        return "'tools' must be a list."
    return None


def _message_problem(message: Any, where: str) -> str | None:
    if not isinstance(message, dict):
        return f"{where} must be a JSON object."
    role = message.get("role")
    if role not in _ROLES:
        return f"{where}.role must be one of {', '.join(_ROLES)} (got {role!r})."
    weight = message.get("weight", 1)
    if weight not in (0, 1) or isinstance(weight, bool):
        return f"{where}.weight must be 0 or 1 (got {weight!r})."
    if "weight" in message and role != "assistant":
        return f"{where}.weight is only allowed on assistant messages."
    content = message.get("content")
    if content is None and not (role == "assistant" and message.get("tool_calls")):
        return f"{where}.content is missing."
    try:
        parsed = ChatMessage.model_validate({k: v for k, v in message.items() if k != "weight"})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        return f"{where}.{loc}: {first['msg']}."
    if parsed.non_text_parts():
        return f"{where}.content: only text can be trained on (got {parsed.non_text_parts()})."
    return None


class _BatchRows:
    """Batch lines, with the ``custom_id`` values seen so far (they must be unique)."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def check(self, row: Any, number: int) -> str | None:
        if not isinstance(row, dict):
            return "each line must be a JSON object."
        for key in ("custom_id", "method", "url", "body"):
            if key not in row:
                return f"missing required key '{key}'."
        custom_id = row["custom_id"]
        if not isinstance(custom_id, str) or not custom_id:
            return "'custom_id' must be a non-empty string."
        if custom_id in self.seen:
            return f"custom_id {custom_id!r} is already used on line {self.seen[custom_id]}."
        self.seen[custom_id] = number
        if row["method"] != "POST":
            return f"'method' must be POST (got {row['method']!r})."
        if row["url"] not in BATCH_URLS:
            return f"'url' must be one of {', '.join(BATCH_URLS)} (got {row['url']!r})."
        body = row["body"]
        if not isinstance(body, dict):
            return "'body' must be a JSON object."
        if body.get("stream"):
            return "'body.stream' must be false: a batch answers each request whole."
        extra = sorted(set(row) - {"custom_id", "method", "url", "body"})
        if extra:
            return f"unknown key(s): {', '.join(extra)}."
        return None
