"""What an erasure leaves behind so that late writes cannot bring the data back.

A write can start before an erasure and land after it: a capture still in the writer's
queue, a shadow answer arriving seconds after its live one, a stored response. Two
tombstones stop them, each one indexed lookup on a path that is already rare:

* an erased tenant's name (:class:`~openclone.store.tables.ErasedTenant`), looked at only
  where a tenant would be *created* (:func:`openclone.store.accounts.ensure_tenant` finding
  no row), so the capture hot path, whose tenant exists, pays nothing. A write that began
  before the erasure is refused; one that began after it (a new request, an admin creating
  the tenant again) creates the tenant anew;
* the ids of the captures a person's, a conversation's or a capture's erasure removed
  (:class:`~openclone.store.tables.ErasedCapture`), which a shadow pair checks in the
  transaction that writes it. A tenant's erasure needs no ids (its name is the tombstone)
  and retention none (it erases captures far older than any pending write).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, exists, insert, literal, select
from sqlalchemy.orm import Session

from openclone.errors import InvalidRequestError
from openclone.store.tables import ErasedCapture, ErasedTenant, now

__all__ = [
    "TenantErased",
    "bury_captures",
    "bury_tenant",
    "capture_erased",
    "check_tenant",
]


class TenantErased(InvalidRequestError):
    """A write for a tenant that was erased; only an admin creates it again."""


def bury_tenant(s: Session, name: str, erasure_id: str) -> None:
    s.merge(ErasedTenant(name=name, erasure_id=erasure_id, created=now()))


def bury_captures(s: Session, captures: Select[Any], erasure_id: str) -> None:
    """Record the capture ids ``captures`` selects, inside the database (no id list in
    Python: a person may have many). Call it before the captures are deleted."""
    sub = captures.subquery()
    rows = select(sub.c.id, literal(erasure_id)).where(
        ~exists().where(ErasedCapture.capture_id == sub.c.id)
    )
    s.execute(
        insert(ErasedCapture).from_select(["capture_id", "erasure_id"], rows),
        execution_options={"synchronize_session": False},
    )


def capture_erased(s: Session, capture_id: str) -> bool:
    return s.get(ErasedCapture, capture_id) is not None


def check_tenant(s: Session, name: str, started: float) -> None:
    """Raise :class:`TenantErased` when ``name`` was erased after a write that began at
    ``started`` (epoch seconds): that write is late, and must not create it again."""
    erased = s.get(ErasedTenant, name)
    if erased is not None and started <= erased.created:
        raise TenantErased(
            f"tenant {name!r} was erased after this write began", param="tenant",
            code="tenant_erased",
        )  # fmt: skip
