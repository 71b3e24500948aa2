"""The audit log of admin actions: keys, consent changes, erasures, exports."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from openclone.store.db import Store
from openclone.store.tables import AuditEntry

__all__ = ["audit", "list_audit"]


def audit(s: Session, actor: str, action: str, **detail: Any) -> None:
    """Record in the caller's transaction, so the action and its record commit together."""
    s.add(AuditEntry(actor=actor, action=action, detail=detail))


def list_audit(store: Store, limit: int = 100) -> list[AuditEntry]:
    with store.session() as s:
        rows = s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit))
        return list(rows)
