"""Stored chat completions on the wire: ``store``/``metadata`` on a chat request, the list
query, and the objects OpenAI answers with (``chat.completion`` with its ``metadata``, the
stored messages, a cursor page), so the SDK's ``chat.completions.list/retrieve/update/
delete/messages.list`` parse them.

Metadata follows OpenAI's rules: at most 16 pairs, string keys of at most 64 characters,
string values of at most 512.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from openclone.errors import InvalidRequestError, UnsupportedParameter
from openclone.schema import ChatCompletionRequest
from openclone.store.stored_completions import CompletionPage, StoredRecord

__all__ = [
    "check_query",
    "completion_object",
    "deleted_object",
    "for_engine",
    "keep_options",
    "list_object",
    "message_objects",
    "metadata_of",
    "page_object",
    "query_metadata",
    "update_metadata_of",
]

MAX_PAIRS, MAX_KEY, MAX_VALUE = 16, 64, 512
_STORE_FIELDS = ("store", "metadata")
_LIST_PARAMS = {"model", "after", "limit", "order"}
_QUERY_KEY = re.compile(r"^metadata\[(.*)\]$")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Request parameters OpenAI repeats on a stored completion, when the request had them.
_REQUEST_FIELDS = (
    "temperature", "top_p", "seed", "tools", "tool_choice", "response_format",
    "presence_penalty", "frequency_penalty",
)  # fmt: skip


def metadata_of(value: Any, param: str = "metadata") -> dict[str, str] | None:
    """``value`` checked as OpenAI checks metadata; None stays None."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequestError(
            f"Invalid type for '{param}': expected an object, but got {type(value).__name__} "
            "instead.",
            param=param,
        )
    if len(value) > MAX_PAIRS:
        raise InvalidRequestError(
            f"Invalid '{param}': too many properties. Expected an object with at most "
            f"{MAX_PAIRS} properties, but got an object with {len(value)} properties instead.",
            param=param,
        )
    for key, item in value.items():
        if _SURROGATE.search(str(key)) or (isinstance(item, str) and _SURROGATE.search(item)):
            # Kept, it could never be answered again (JSON out is UTF-8): every read a 500.
            raise InvalidRequestError(
                f"Invalid value for '{param}': the text holds an unpaired UTF-16 surrogate "
                "(\\ud800-\\udfff), which is not valid Unicode. Send text as valid UTF-8.",
                param=param,
                code="invalid_unicode",
            )
        if len(key) > MAX_KEY:
            raise InvalidRequestError(
                f"Invalid '{param}': the key '{key[:MAX_KEY]}…' is {len(key)} characters long; "
                f"keys are at most {MAX_KEY}.",
                param=param,
            )
        if not isinstance(item, str):
            raise InvalidRequestError(
                f"Invalid type for '{param}.{key}': expected a string, but got "
                f"{type(item).__name__} instead.",
                param=param,
            )
        if len(item) > MAX_VALUE:
            raise InvalidRequestError(
                f"Invalid '{param}.{key}': string too long. Expected a string with maximum "
                f"length {MAX_VALUE}, but got a string with length {len(item)} instead.",
                param=param,
            )
    return dict(value)


def keep_options(req: ChatCompletionRequest) -> dict[str, str] | None:
    """The metadata to keep the exchange with when the request says ``store: true``; None
    when it is not to be kept. A malformed ``store`` or ``metadata`` is a 400."""
    extra = req.model_extra or {}
    store = extra.get("store")
    if store is not None and not isinstance(store, bool):
        raise InvalidRequestError(
            f"Invalid type for 'store': expected a boolean, but got {type(store).__name__} "
            "instead.",
            param="store",
        )
    metadata = metadata_of(extra.get("metadata"))
    return (metadata or {}) if store else None


def for_engine(req: ChatCompletionRequest) -> ChatCompletionRequest:
    """``req`` without ``store`` and ``metadata``: the gateway keeps the exchange, an
    upstream must not keep a copy of its own."""
    extra = req.model_extra
    if not extra or not any(name in extra for name in _STORE_FIELDS):
        return req
    copy = req.model_copy()
    copy.__pydantic_extra__ = {k: v for k, v in extra.items() if k not in _STORE_FIELDS}
    return copy


def query_metadata(params: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The ``metadata[KEY]=VALUE`` filters of a list query; any other unknown parameter is
    a 400 ``unsupported_parameter``."""
    found: dict[str, str] = {}
    for name, value in params:
        match = _QUERY_KEY.match(name)
        if match:
            found[match.group(1)] = value
        else:
            check_query([name], _LIST_PARAMS)
    return metadata_of(found) or {}


def check_query(names: Iterable[str], known: Collection[str]) -> None:
    """A query parameter not in ``known`` is a 400 ``unsupported_parameter``."""
    for name in names:
        if name not in known:
            raise UnsupportedParameter(f"Unknown parameter: '{name}'.", param=name)


def update_metadata_of(body: Any) -> dict[str, str]:
    """The new metadata of an update body ``{"metadata": {...} | null}``."""
    if not isinstance(body, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    for name in body:
        if name != "metadata":
            raise UnsupportedParameter(f"Unknown parameter: '{name}'.", param=name)
    if "metadata" not in body:
        raise InvalidRequestError("Missing required parameter: 'metadata'.", param="metadata")
    return metadata_of(body["metadata"]) or {}


def completion_object(rec: StoredRecord) -> dict[str, Any]:
    """A stored completion as OpenAI shows one: the answer, its metadata, some request
    parameters."""
    body: dict[str, Any] = dict(rec.response or {})
    body.update(id=rec.id, object="chat.completion", model=rec.model, metadata=rec.metadata)
    if not isinstance(body.get("created"), int):
        body["created"] = int(rec.created)
    body.setdefault("choices", [])
    for name in _REQUEST_FIELDS:
        if name in rec.request and name not in body:
            body[name] = rec.request[name]
    return body


def message_objects(rec: StoredRecord) -> list[dict[str, Any]]:
    """The request's messages, each with an id (``<completion id>-<position>``)."""
    out: list[dict[str, Any]] = []
    for i, m in enumerate(rec.request.get("messages") or []):
        if not isinstance(m, dict):
            continue
        content = m.get("content")
        parts = content if isinstance(content, list) else None
        if parts is not None:
            content = "\n".join(
                str(p.get("text", ""))
                for p in parts
                if isinstance(p, dict) and p.get("type") == "text"
            )
        message: dict[str, Any] = {
            "id": f"{rec.id}-{i}", "role": m.get("role"), "content": content,
            "content_parts": parts,
        }  # fmt: skip
        for name in ("name", "tool_calls", "tool_call_id", "refusal"):
            if m.get(name) is not None:
                message[name] = m[name]
        out.append(message)
    return out


def list_object(data: Sequence[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": list(data),
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


def page_object(page: CompletionPage) -> dict[str, Any]:
    return list_object([completion_object(r) for r in page.data], page.has_more)


def deleted_object(completion_id: str) -> dict[str, Any]:
    return {"id": completion_id, "object": "chat.completion.deleted", "deleted": True}
