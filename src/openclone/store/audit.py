"""The audit log of admin actions: keys, consent changes, erasures, exports."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from openclone.store.db import Store
from openclone.store.tables import AuditEntry

__all__ = ["audit", "list_audit"]


def audit(s: Session, actor: str, action: str, **detail: Any) -> None:
    """Record in the caller's transaction, so the action and its record commit together.

    ``detail`` names things (ids, tenant and user names, counts), never captured text.
    """
    s.add(AuditEntry(actor=actor, action=action, detail=detail))


def list_audit(
    store: Store,
    limit: int = 100,
    *,
    action: str | None = None,
    since: float | None = None,
    actor: str | None = None,
    after: int | None = None,
) -> list[AuditEntry]:
    """Newest first; ``action`` matches exactly or as a prefix (``key`` finds ``key.*``),
    ``actor`` exactly; ``after`` (an entry's id) pages on: the entries older than it."""
    with store.session() as s:
        q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if action:
            q = q.where((AuditEntry.action == action) | AuditEntry.action.startswith(action + "."))
        if actor:
            q = q.where(AuditEntry.actor == actor)
        if since is not None:
            q = q.where(AuditEntry.created >= since)
        if after is not None:
            q = q.where(AuditEntry.id < after)
        return list(s.scalars(q))
