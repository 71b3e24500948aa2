"""Which stored text is sealed, and what binds each ciphertext to its place.

The store's writers seal through these functions and its readers open through them;
nothing else needs to know the format (:mod:`openclone.store.crypto`). Each value is
bound to its tenant, its table and column, and its row:

| sealed | bound to the row by |
| --- | --- |
| ``captures.request``, ``captures.response`` | the capture id |
| ``messages.content`` | the conversation id and the message's position |
| ``conversations.title``, ``conversations.system_prompt`` | the conversation id |
| ``feedback.comment`` | the id of the capture it rates |
| ``responses.body``, ``.input_items``, ``.messages`` | the response id |
| ``shadow_pairs.request``, ``.live_response``, ``.shadow_response`` | the pair id |
| a row of an encrypted export file | the capture id |
| ``files.content`` (uploads, batch output and error files) | the file id |
| ``batch_results.body`` (an answer until the batch's files are written) | batch id and line |

Ids, tenants, models, times, token counts and consent stay in the clear: the store
filters, joins and erases by them. Every function takes the open session, whose keyring
(``Store.keyring``) finds the tenant's data key.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy.orm import Session

from openclone.store.crypto import KEYRING, Keyring

__all__ = [
    "keyring",
    "open_batch_result",
    "open_comment",
    "open_conversation",
    "open_exchange",
    "open_export_row",
    "open_file",
    "open_message",
    "open_pair",
    "open_response",
    "seal_batch_result",
    "seal_comment",
    "seal_exchange",
    "seal_export_row",
    "seal_file",
    "seal_message",
    "seal_pair",
    "seal_response",
    "seal_title_and_prompt",
]

_UNKEYED = Keyring()  # a session from elsewhere: seals nothing, opens only plain text


def keyring(s: Session) -> Keyring:
    """The keyring of the store that opened ``s``."""
    found = s.info.get(KEYRING)
    return found if isinstance(found, Keyring) else _UNKEYED


class _CaptureLike(Protocol):
    id: str
    tenant_id: str
    request: Any
    response: Any


def seal_exchange(
    s: Session, tenant_id: str, capture_id: str, request: Any, response: Any
) -> tuple[Any, Any]:
    k = keyring(s)
    return (
        k.seal_json(s, tenant_id, "captures.request", capture_id, request),
        k.seal_json(s, tenant_id, "captures.response", capture_id, response),
    )


def open_exchange(
    s: Session, capture: _CaptureLike, *, response: bool = True
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A capture's request and response as they were captured (``response=False``: the
    request only, the response is ``None``)."""
    k = keyring(s)
    request = k.open_json(s, capture.tenant_id, "captures.request", capture.id, capture.request)
    answer = None
    if response:
        answer = k.open_json(
            s, capture.tenant_id, "captures.response", capture.id, capture.response
        )
    return request, answer


def _message_row(conversation_id: str, position: int) -> str:
    return f"{conversation_id}#{position}"


def seal_message(s: Session, tenant_id: str, conversation_id: str, position: int, text: str) -> str:
    return keyring(s).seal_text(
        s, tenant_id, "messages.content", _message_row(conversation_id, position), text
    )


def open_message(
    s: Session, tenant_id: str, conversation_id: str, position: int, content: str
) -> str:
    return keyring(s).open_text(
        s, tenant_id, "messages.content", _message_row(conversation_id, position), content
    )


class _ConversationLike(Protocol):
    id: str
    tenant_id: str
    title: str
    system_prompt: str


def seal_title_and_prompt(
    s: Session, c: _ConversationLike, *, title: str | None = None, system_prompt: str | None = None
) -> None:
    """Set ``c``'s title and/or system prompt, sealed."""
    k = keyring(s)
    if title is not None:
        c.title = k.seal_text(s, c.tenant_id, "conversations.title", c.id, title)
    if system_prompt is not None:
        c.system_prompt = k.seal_text(
            s, c.tenant_id, "conversations.system_prompt", c.id, system_prompt
        )


def open_conversation(s: Session, c: _ConversationLike) -> tuple[str, str]:
    """The conversation's title and system prompt."""
    k = keyring(s)
    return (
        k.open_text(s, c.tenant_id, "conversations.title", c.id, c.title),
        k.open_text(s, c.tenant_id, "conversations.system_prompt", c.id, c.system_prompt),
    )


def seal_comment(s: Session, tenant_id: str, capture_id: str, comment: str) -> str:
    return keyring(s).seal_text(s, tenant_id, "feedback.comment", capture_id, comment)


def open_comment(s: Session, tenant_id: str, capture_id: str, comment: str) -> str:
    return keyring(s).open_text(s, tenant_id, "feedback.comment", capture_id, comment)


_RESPONSE = ("body", "input_items", "messages")
_PAIR = ("request", "live_response", "shadow_response")


def _seal_row(
    s: Session, table: str, tenant_id: str, row_id: str, columns: tuple[str, ...], values: Any
) -> tuple[Any, ...]:
    """``values`` of a row's JSON ``columns``, each sealed to its column and row."""
    k = keyring(s)
    return tuple(
        k.seal_json(s, tenant_id, f"{table}.{c}", row_id, v)
        for c, v in zip(columns, values, strict=True)
    )


def _open_row(s: Session, table: str, row: Any, columns: tuple[str, ...]) -> tuple[Any, ...]:
    """A row's JSON ``columns`` opened (``row`` has ``id``, ``tenant_id`` and the columns)."""
    k = keyring(s)
    return tuple(
        k.open_json(s, row.tenant_id, f"{table}.{c}", row.id, getattr(row, c)) for c in columns
    )


def seal_response(
    s: Session, tenant_id: str, response_id: str, body: Any, input_items: Any, messages: Any
) -> tuple[Any, ...]:
    """A stored Responses API answer's body, input items and chat so far, sealed."""
    return _seal_row(
        s, "responses", tenant_id, response_id, _RESPONSE, (body, input_items, messages)
    )


def open_response(s: Session, row: Any) -> tuple[Any, ...]:
    return _open_row(s, "responses", row, _RESPONSE)


def seal_export_row(s: Session, tenant_id: str, capture_id: str, content: dict[str, Any]) -> str:
    """An export row's content (messages, tools) sealed; the row keeps its metadata in the
    clear (capture id: what an erasure rewrites the file by)."""
    return str(keyring(s).seal_json(s, tenant_id, "exports.row", capture_id, content))


def open_export_row(s: Session, tenant_id: str, capture_id: str, sealed: str) -> dict[str, Any]:
    opened = keyring(s).open_json(s, tenant_id, "exports.row", capture_id, sealed)
    return dict(opened)


def seal_pair(
    s: Session, tenant_id: str, pair_id: str, request: Any, live: Any, shadow: Any
) -> tuple[Any, ...]:
    """A shadow pair's request and both answers (copies of captured text), sealed."""
    return _seal_row(s, "shadow_pairs", tenant_id, pair_id, _PAIR, (request, live, shadow))


def open_pair(s: Session, p: Any) -> tuple[Any, ...]:
    return _open_row(s, "shadow_pairs", p, _PAIR)


def seal_file(s: Session, tenant_id: str, file_id: str, data: bytes) -> bytes:
    """A Files API file's content (company prompts, generated answers), sealed."""
    return keyring(s).seal_bytes(s, tenant_id, "files.content", file_id, data)


def open_file(s: Session, tenant_id: str, file_id: str, content: bytes) -> bytes:
    return keyring(s).open_bytes(s, tenant_id, "files.content", file_id, content)


def _result_row(batch_id: str, line: int) -> str:
    return f"{batch_id}#{line}"


def seal_batch_result(s: Session, tenant_id: str, batch_id: str, line: int, body: Any) -> Any:
    """A batch's answer to one of its lines, kept until its output file is written."""
    return keyring(s).seal_json(
        s, tenant_id, "batch_results.body", _result_row(batch_id, line), body
    )


def open_batch_result(s: Session, tenant_id: str, batch_id: str, line: int, body: Any) -> Any:
    return keyring(s).open_json(
        s, tenant_id, "batch_results.body", _result_row(batch_id, line), body
    )
