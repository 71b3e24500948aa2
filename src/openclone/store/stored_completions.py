"""Stored chat completions (``store: true`` on a chat completion, or imported), per tenant.

A stored completion is a capture plus one ``stored_completions`` row: the id the client was
answered with (``chatcmpl-…``) and the client's metadata. The capture writer writes both in
one transaction (:func:`stored_row`); the exchange's text is the capture's (sealed at rest
when the store encrypts), read here only through :func:`_content`. The metadata stay in the
clear, as ids do: the list filters on them. Another tenant's completion is "not found", never shown, changed
or deleted. Erasing a person, conversation, capture or tenant, and retention, remove the
row with its capture.

Deleting a stored completion removes it from this API, not its capture: every exchange is
captured whether or not the client asked to keep it, and captures answer to consent,
retention and erasure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from openclone.errors import APIError
from openclone.store.accounts import find_tenant
from openclone.store.db import Store
from openclone.store.exchange import Exchange
from openclone.store.paging import beyond, listing_order
from openclone.store.sealed import open_exchange
from openclone.store.tables import Capture, StoredCompletion

__all__ = [
    "CompletionNotFound",
    "CompletionPage",
    "StoredRecord",
    "delete_completion",
    "get_completion",
    "known_captures",
    "list_completions",
    "stored_row",
    "update_metadata",
]

Order = Literal["asc", "desc"]


class CompletionNotFound(APIError):
    status_code = 404
    error_type = "invalid_request_error"
    default_code = "not_found"

    def __init__(self, completion_id: str) -> None:
        super().__init__(f"No chat completion found with id '{completion_id}'.")


@dataclass
class StoredRecord:
    id: str  # the completion's id, as the client knows it
    capture_id: str
    model: str
    created: float
    metadata: dict[str, str]
    request: dict[str, Any]  # the chat completion request, as captured
    response: dict[str, Any] | None  # the chat.completion answer, as captured


@dataclass
class CompletionPage:
    data: list[StoredRecord]
    has_more: bool


def stored_row(exchange: Exchange, capture: dict[str, Any]) -> dict[str, Any]:
    """The ``stored_completions`` row of an exchange to keep, beside its capture's row."""
    response = exchange.response or {}
    answer_id = response.get("id")
    return {
        "capture_id": capture["id"],
        "tenant_id": capture["tenant_id"],
        "completion_id": str(answer_id)[:128] if answer_id else capture["id"],
        "metadata": dict(exchange.metadata or {}),
        "created": capture["created"],
    }


def _content(s: Session, capture: Capture) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The captured request and response (opened when sealed at rest): the one place this
    module reads captured text."""
    return open_exchange(s, capture)


def _record(s: Session, row: StoredCompletion, capture: Capture) -> StoredRecord:
    request, response = _content(s, capture)
    return StoredRecord(
        id=row.completion_id, capture_id=row.capture_id, model=capture.model,
        created=row.created, metadata=dict(row.metadata_ or {}), request=request,
        response=response,
    )  # fmt: skip


def _tenant_id(s: Session, tenant: str) -> str | None:
    t = find_tenant(s, tenant)
    return t.id if t is not None else None


def _owned(s: Session, tenant: str, completion_id: str) -> StoredCompletion | None:
    tid = _tenant_id(s, tenant)
    if tid is None:
        return None
    # An upstream may reuse ids; the newest with this id is the one meant.
    return s.scalar(
        select(StoredCompletion)
        .where(StoredCompletion.tenant_id == tid, StoredCompletion.completion_id == completion_id)
        .order_by(StoredCompletion.created.desc(), StoredCompletion.capture_id.desc())
        .limit(1)
    )


def list_completions(
    store: Store,
    tenant: str,
    *,
    model: str | None = None,
    metadata: dict[str, str] | None = None,
    after: str | None = None,
    limit: int = 20,
    order: Order = "asc",
) -> CompletionPage:
    """A page of the tenant's stored completions, by time; ``metadata`` must all match.

    ``after`` is the id of the last completion of the previous page; an id the tenant does
    not have gives an empty page."""
    wanted = dict(metadata or {})
    with store.session() as s:
        tid = _tenant_id(s, tenant)
        if tid is None:
            return CompletionPage([], False)
        q = (
            select(StoredCompletion, Capture)
            .join(Capture, Capture.id == StoredCompletion.capture_id)
            .where(StoredCompletion.tenant_id == tid)
        )
        if model is not None:
            q = q.where(Capture.model == model)
        sql_exact = True
        for key, value in wanted.items():
            if store.is_sqlite and not _plain_key(key):
                sql_exact = False  # SQLite's JSON paths cannot name it: matched below
                continue
            q = q.where(StoredCompletion.metadata_[key].as_string() == value)
        keys = (StoredCompletion.created, StoredCompletion.capture_id)
        newest = order != "asc"
        q = q.order_by(*listing_order(*keys, newest))
        position: tuple[float, str] | None = None
        if after is not None:
            cursor = _owned(s, tenant, after)
            if cursor is None:
                return CompletionPage([], False)
            position = (cursor.created, cursor.capture_id)
        found: list[StoredRecord] = []
        chunk = limit + 1 if sql_exact else max(100, limit + 1)
        while len(found) <= limit:
            page = q if position is None else q.where(beyond(*keys, *position, newest))
            rows = [(r, c) for r, c in s.execute(page.limit(chunk))]
            found += [_record(s, r, c) for r, c in rows if _matches(r, wanted)]
            if len(rows) < chunk:
                break
            position = (rows[-1][0].created, rows[-1][0].capture_id)
        return CompletionPage(found[:limit], len(found) > limit)


def _plain_key(key: str) -> bool:
    # SQLite compares a JSON path's label with the key as written in the JSON text, and has
    # no escape for a quote in a label: only printable ASCII without " or \ is safe.
    return key.isascii() and key.isprintable() and '"' not in key and "\\" not in key


def _matches(row: StoredCompletion, wanted: dict[str, str]) -> bool:
    have = row.metadata_ or {}
    return all(have.get(k) == v for k, v in wanted.items())


def get_completion(store: Store, tenant: str, completion_id: str) -> StoredRecord:
    """The tenant's stored completion ``completion_id``; :class:`CompletionNotFound` if none."""
    with store.session() as s:
        row = _owned(s, tenant, completion_id)
        capture = s.get(Capture, row.capture_id) if row is not None else None
        if row is None or capture is None:
            raise CompletionNotFound(completion_id)
        return _record(s, row, capture)


def update_metadata(
    store: Store, tenant: str, completion_id: str, metadata: dict[str, str]
) -> StoredRecord:
    """Replace the metadata of the tenant's stored completion; returns it as it is now."""
    with store.session() as s:
        row = _owned(s, tenant, completion_id)
        if row is None:
            raise CompletionNotFound(completion_id)
        row.metadata_ = dict(metadata)
    return get_completion(store, tenant, completion_id)


def delete_completion(store: Store, tenant: str, completion_id: str) -> None:
    """Take the tenant's stored completion out of the API (its capture stays: see above)."""
    with store.session() as s:
        row = _owned(s, tenant, completion_id)
        if row is None:
            raise CompletionNotFound(completion_id)
        s.execute(delete(StoredCompletion).where(StoredCompletion.capture_id == row.capture_id))


def known_captures(store: Store, ids: list[str]) -> set[str]:
    """Which of ``ids`` are captures already (an import's idempotency check)."""
    if not ids:
        return set()
    with store.session() as s:
        return set(s.scalars(select(Capture.id).where(Capture.id.in_(ids))))
