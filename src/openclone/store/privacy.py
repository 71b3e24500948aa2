"""Feedback, erasure and retention.

Erasure deletes for real: the rows go, SQLite's freed pages are zeroed (``secure_delete``)
and its WAL truncated, PostgreSQL's dead tuples vacuumed, and recorded export files lose the
erased rows. What remains is the erasure record — who, what kind, which capture ids, which
exports held them — never the content, so every dataset built from erased data is listed.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from openclone.errors import InvalidRequestError
from openclone.store.accounts import Principal, tenant_by_name, user_by_name
from openclone.store.audit import audit
from openclone.store.conversations import owned_capture
from openclone.store.db import Store
from openclone.store.tables import (
    ApiKey,
    Capture,
    Conversation,
    Erasure,
    Export,
    ExportItem,
    Feedback,
    Message,
    Tenant,
    User,
    now,
)

__all__ = ["ErasureResult", "add_feedback", "apply_retention", "erase", "erasures"]

_TOUCHED = ["captures", "messages", "conversations", "feedback", "users", "api_keys"]


def add_feedback(
    store: Store, who: Principal, capture_id: str, rating: int, comment: str = ""
) -> None:
    """Thumbs up (+1) or down (-1) on one of the caller's own answers; the latest counts."""
    if rating not in (1, -1):
        raise InvalidRequestError("rating must be 1 or -1", param="rating")
    with store.session() as s:
        cap = owned_capture(s, who, capture_id)
        s.execute(delete(Feedback).where(Feedback.capture_id == cap.id))
        s.add(Feedback(capture_id=cap.id, rating=rating, comment=comment[:4000]))


@dataclass(frozen=True)
class ErasureResult:
    id: str
    kind: str
    target: str
    counts: dict[str, int]
    exports: list[str]  # ids of exports that held erased captures (their files are rewritten)


def erase(
    store: Store,
    *,
    actor: str,
    tenant: str | None = None,
    user: str | None = None,
    conversation: str | None = None,
    capture_ids: list[str] | None = None,
    kind: str | None = None,
) -> ErasureResult:
    """Erase a person (``tenant`` + ``user``), a conversation, a whole tenant, or captures."""
    with store.session() as s:
        t = tenant_by_name(s, tenant, create=False) if tenant else None
        if tenant and t is None:
            raise InvalidRequestError(f"no tenant named {tenant!r}", param="tenant")
        if conversation:
            conv = s.get(Conversation, conversation)
            if conv is None:
                raise InvalidRequestError(f"no conversation {conversation!r}")
            caps = select(Capture.id).where(Capture.conversation_id == conversation)
            convs = select(Conversation.id).where(Conversation.id == conversation)
            users = None
            what, target = "conversation", conversation
        elif user:
            if t is None:
                raise InvalidRequestError("erasing a user needs their tenant", param="tenant")
            u = user_by_name(s, t, user, create=False)
            if u is None:
                raise InvalidRequestError(f"no user {user!r} in tenant {tenant!r}")
            caps = select(Capture.id).where(Capture.user_id == u.id)
            convs = select(Conversation.id).where(Conversation.user_id == u.id)
            users = [u.id]
            what, target = "user", f"{tenant}/{user}"
        elif t is not None and capture_ids is None:
            caps = select(Capture.id).where(Capture.tenant_id == t.id)
            convs = select(Conversation.id).where(Conversation.tenant_id == t.id)
            users = list(s.scalars(select(User.id).where(User.tenant_id == t.id)))
            what, target = "tenant", t.name
        elif capture_ids is not None:
            caps = select(Capture.id).where(Capture.id.in_(capture_ids))
            convs = None
            users = None
            what, target = kind or "captures", tenant or "*"
        else:
            raise InvalidRequestError("say what to erase: --user, --conversation or --tenant")
        ids = list(s.scalars(caps))
        conv_ids = list(s.scalars(convs)) if convs is not None else []
        counts = _delete(s, ids, conv_ids, users, t if what == "tenant" else None)
        export_ids = sorted(
            set(s.scalars(select(ExportItem.export_id).where(ExportItem.capture_id.in_(ids))))
        ) if ids else []  # fmt: skip
        record = Erasure(
            actor=actor, kind=kind or what, target=target, counts=counts,
            capture_ids=ids, exports=export_ids,
        )  # fmt: skip
        s.add(record)
        audit(s, actor, "erase", kind=kind or what, target=target, **counts)
        exports = [s.get(Export, e) for e in export_ids]
        for ex in exports:
            if ex is not None:
                _scrub_export(ex, set(ids))
        result = ErasureResult(record.id, record.kind, target, counts, export_ids)
    store.compact(_TOUCHED)
    return result


def _delete(
    s: Session, caps: list[str], convs: list[str], users: list[str] | None, tenant: Tenant | None
) -> dict[str, int]:
    counts = {"captures": len(caps), "conversations": len(convs)}
    if caps:
        s.execute(delete(Feedback).where(Feedback.capture_id.in_(caps)))
        s.execute(delete(Message).where(Message.capture_id.in_(caps)))
        s.execute(delete(Capture).where(Capture.id.in_(caps)))
    if convs:
        res = s.execute(delete(Message).where(Message.conversation_id.in_(convs)))
        counts["messages"] = res.rowcount  # type: ignore[attr-defined]
        s.execute(delete(Conversation).where(Conversation.id.in_(convs)))
    if users:
        s.execute(delete(ApiKey).where(ApiKey.user_id.in_(users)))
        s.execute(delete(User).where(User.id.in_(users)))
        counts["users"] = len(users)
    if tenant is not None:
        s.execute(delete(ApiKey).where(ApiKey.tenant_id == tenant.id))
        s.delete(tenant)
    return counts


def _scrub_export(export: Export, erased: set[str]) -> None:
    """Rewrite a recorded export file without the erased captures' rows."""
    path = Path(export.path)
    if not path.is_file():
        return
    kept: list[str] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                cid = json.loads(line).get("metadata", {}).get("capture_id")
            except (ValueError, AttributeError):
                cid = None
            if cid not in erased:
                kept.append(line)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(kept), encoding="utf-8")
    os.replace(tmp, path)
    export.sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    export.rows = len(kept)


def apply_retention(
    store: Store, *, actor: str = "retention", at: float | None = None
) -> list[ErasureResult]:
    """Erase captures older than each tenant's ``retention_days``, through ``erase``."""
    at = at or now()
    results = []
    with store.session() as s:
        tenants = list(s.execute(select(Tenant.name, Tenant.id, Tenant.retention_days).where(
            Tenant.retention_days.is_not(None)
        )))  # fmt: skip
    for name, tid, days in tenants:
        with store.session() as s:
            old = list(
                s.scalars(
                    select(Capture.id).where(
                        Capture.tenant_id == tid, Capture.created < at - (days or 0) * 86400
                    )
                )
            )
        if old:
            results.append(
                erase(store, actor=actor, tenant=name, capture_ids=old, kind="retention")
            )
    return results


def erasures(store: Store, limit: int = 100) -> list[dict[str, Any]]:
    """Erasure records, newest first: what was erased and which exports held it."""
    with store.session() as s:
        rows = s.scalars(select(Erasure).order_by(Erasure.created.desc()).limit(limit))
        return [
            {"id": e.id, "actor": e.actor, "kind": e.kind, "target": e.target,
             "counts": e.counts, "captures": len(e.capture_ids), "exports": e.exports,
             "created": e.created}
            for e in rows
        ]  # fmt: skip
