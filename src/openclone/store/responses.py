"""Stored Responses API answers, scoped to their tenant.

Another tenant's response is "not found", never shown, continued or deleted. A response
names its person too (the key's user, else the request's ``user``), so erasing that person
erases their responses with the rest of their data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from openclone.errors import APIError
from openclone.store.accounts import ensure_tenant, ensure_user, find_tenant
from openclone.store.db import Store
from openclone.store.sealed import open_response, seal_response
from openclone.store.tables import StoredResponse, now

__all__ = [
    "ResponseNotFound",
    "ResponseRecord",
    "delete_response",
    "get_response",
    "save_response",
]


class ResponseNotFound(APIError):
    status_code = 404
    error_type = "invalid_request_error"

    def __init__(self, response_id: str, param: str | None = None) -> None:
        what = "Previous response" if param == "previous_response_id" else "Response"
        super().__init__(f"{what} with id '{response_id}' not found.", param=param)


@dataclass
class ResponseRecord:
    id: str
    model: str
    body: dict[str, Any]  # the response object as the client got it
    input_items: list[dict[str, Any]]  # this turn's input items, with ids
    messages: list[dict[str, Any]]  # the chat up to and including this answer
    previous_id: str | None = None
    created: float = field(default_factory=now)


def save_response(store: Store, tenant: str, user: str | None, rec: ResponseRecord) -> None:
    with store.session() as s:
        t = ensure_tenant(s, tenant, started=rec.created)  # late: not past its erasure
        u = ensure_user(s, t, user, started=rec.created) if user else None
        body, items, messages = seal_response(
            s, t.id, rec.id, rec.body, rec.input_items, rec.messages
        )
        s.add(
            StoredResponse(
                id=rec.id, tenant_id=t.id, user_id=u.id if u else None,
                previous_id=rec.previous_id, model=rec.model, body=body,
                input_items=items, messages=messages, created=rec.created,
            )
        )  # fmt: skip


def get_response(
    store: Store, tenant: str, response_id: str, param: str | None = None
) -> ResponseRecord:
    """The tenant's response ``response_id``; :class:`ResponseNotFound` otherwise."""
    with store.session() as s:
        row = _owned(s, tenant, response_id)
        if row is None:
            raise ResponseNotFound(response_id, param)
        body, items, messages = open_response(s, row)
        return ResponseRecord(
            id=row.id, model=row.model, body=body, input_items=items,
            messages=messages, previous_id=row.previous_id, created=row.created,
        )  # fmt: skip


def delete_response(store: Store, tenant: str, response_id: str) -> None:
    with store.session() as s:
        if _owned(s, tenant, response_id) is None:
            raise ResponseNotFound(response_id)
        s.execute(delete(StoredResponse).where(StoredResponse.id == response_id))


def _owned(s: Session, tenant: str, response_id: str) -> StoredResponse | None:
    t = find_tenant(s, tenant)
    if t is None:
        return None
    return s.scalar(
        select(StoredResponse).where(
            StoredResponse.id == response_id, StoredResponse.tenant_id == t.id
        )
    )
