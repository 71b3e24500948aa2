"""What an erasure leaves behind so that late writes cannot bring the data back.

A write can start before an erasure and land after it: a capture still in the writer's
queue, a shadow answer arriving seconds after its live one, a stored response. Three
tombstones stop them, each one indexed lookup on a path that is already rare:

* an erased tenant's name (:class:`~openclone.store.tables.ErasedTenant`), looked at only
  where a tenant would be *created* (:func:`openclone.store.accounts.ensure_tenant` finding
  no row), so the capture hot path, whose tenant exists, pays nothing. A write that began
  before the erasure is refused; one that began after it (a new request, an admin creating
  the tenant again) creates the tenant anew;
* an erased person (:class:`~openclone.store.tables.ErasedUser`, tenant and name), looked
  at the same way where a user would be created
  (:func:`openclone.store.accounts.ensure_user` finding no row);
* the ids of the captures a person's, a conversation's or a capture's erasure removed
  (:class:`~openclone.store.tables.ErasedCapture`), which a shadow pair checks in the
  transaction that writes it. A tenant's erasure needs no ids (its name is the tombstone)
  and retention none (it erases captures far older than any pending write).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, literal, select, true
from sqlalchemy.orm import Session

from openclone.errors import InvalidRequestError
from openclone.store.tables import ErasedCapture, ErasedTenant, ErasedUser, now
from openclone.store.upsert import dialect_insert

__all__ = [
    "ErasedTarget",
    "TenantErased",
    "UserErased",
    "bury_captures",
    "bury_tenant",
    "bury_user",
    "capture_erased",
    "check_tenant",
    "check_user",
]


class ErasedTarget(InvalidRequestError):
    """A late write for something an erasure removed: it is dropped, not written."""


class TenantErased(ErasedTarget):
    """A write for a tenant that was erased; only an admin creates it again."""


class UserErased(ErasedTarget):
    """A write, begun before the erasure, for a person that was erased."""


def bury_tenant(s: Session, name: str, erasure_id: str) -> None:
    # Two erasures of one tenant at once: the later one's time stands, neither fails.
    stmt = dialect_insert(s, ErasedTenant).values(name=name, erasure_id=erasure_id, created=now())
    s.execute(stmt.on_conflict_do_update(
        index_elements=["name"], set_={"erasure_id": erasure_id, "created": now()},
    ))  # fmt: skip


def bury_user(s: Session, tenant_id: str, name: str, erasure_id: str) -> None:
    stmt = dialect_insert(s, ErasedUser).values(
        tenant_id=tenant_id, name=name, erasure_id=erasure_id, created=now()
    )
    s.execute(stmt.on_conflict_do_update(
        index_elements=["tenant_id", "name"], set_={"erasure_id": erasure_id, "created": now()},
    ))  # fmt: skip


def bury_captures(s: Session, captures: Select[Any], erasure_id: str) -> None:
    """Record the capture ids ``captures`` selects, inside the database (no id list in
    Python: a person may have many). Call it before the captures are deleted."""
    sub = captures.subquery()
    # WHERE true: SQLite would read ON CONFLICT as the join's ON clause without a WHERE.
    rows = select(sub.c.id, literal(erasure_id)).where(true())
    # ON CONFLICT, not NOT EXISTS: two erasures reaching one capture at once (a person's
    # and a conversation's) would both see it missing and collide on PostgreSQL.
    stmt = dialect_insert(s, ErasedCapture).from_select(["capture_id", "erasure_id"], rows)
    s.execute(
        stmt.on_conflict_do_nothing(index_elements=["capture_id"]),
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


def check_user(s: Session, tenant_id: str, name: str, started: float) -> None:
    """Raise :class:`UserErased` when person ``name`` of the tenant was erased after a
    write that began at ``started``: that write is late, and must not create them again."""
    erased = s.get(ErasedUser, (tenant_id, name))
    if erased is not None and started <= erased.created:
        raise UserErased(
            "this user was erased after this write began", param="user", code="user_erased"
        )
