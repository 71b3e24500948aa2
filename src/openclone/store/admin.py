"""What an administrator reads about a tenant: its policy, limits and counts, and its people.

Read-only and content-free (names, counts and times, never captured text); what changes
things lives with the thing it changes (``accounts``, ``keys``, ``ratelimits``,
``privacy``), so the CLI and the admin HTTP API call the same functions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from openclone.errors import InvalidRequestError
from openclone.store.accounts import find_tenant
from openclone.store.db import Store
from openclone.store.ratelimits import Limits, get_limits, month_of, month_usage
from openclone.store.tables import ApiKey, Capture, Conversation, StoredResponse, User

__all__ = ["TenantDetail", "UserInfo", "list_users", "tenant_detail"]


@dataclass(frozen=True)
class TenantDetail:
    name: str
    consent_default: bool
    redact_mode: str
    retention_days: int | None
    created: float
    users: int
    keys: int  # live
    revoked_keys: int
    captures: int
    conversations: int
    responses: int  # stored Responses API answers
    limits: Limits
    tokens_this_month: int  # as the gateways have synced them (about once a second)


@dataclass(frozen=True)
class UserInfo:
    name: str
    consent: bool | None  # None: the tenant's default
    keys: int  # live
    captures: int
    conversations: int
    created: float


def _count(s: Session, q: Select[Any]) -> int:
    return int(s.scalar(q) or 0)


def tenant_detail(store: Store, name: str) -> TenantDetail:
    """One tenant's policy, rate limits, this month's tokens and how much it holds."""
    with store.session() as s:
        t = find_tenant(s, name)
        if t is None:
            raise InvalidRequestError(f"no tenant named {name!r}", param="tenant")
        n = func.count()
        keys = select(ApiKey.revoked.is_(None), n).where(ApiKey.tenant_id == t.id)
        by_state = {
            bool(live): int(c) for live, c in s.execute(keys.group_by(ApiKey.revoked.is_(None)))
        }
        counts = [
            _count(s, select(n).select_from(table).where(table.tenant_id == t.id))
            for table in (User, Capture, Conversation, StoredResponse)
        ]
        policy = (t.name, t.consent_default, t.redact_mode, t.retention_days, t.created)
    limits = get_limits(store, tenant=name)
    used = month_usage(store, name, month_of(time.time()))
    users, captures, conversations, responses = counts
    return TenantDetail(*policy, users, by_state.get(True, 0), by_state.get(False, 0),
                        captures, conversations, responses, limits, used)  # fmt: skip


def list_users(
    store: Store, tenant: str, *, offset: int = 0, limit: int | None = None
) -> list[UserInfo]:
    """A tenant's people by name, with their live keys, captures and conversations."""
    with store.session() as s:
        t = find_tenant(s, tenant)
        if t is None:
            raise InvalidRequestError(f"no tenant named {tenant!r}", param="tenant")
        q = select(User).where(User.tenant_id == t.id).order_by(User.name)
        users = list(s.scalars(q.offset(offset).limit(limit)))
        ids = [u.id for u in users]

        def per_user(col: InstrumentedAttribute[str | None], *where: Any) -> dict[str, int]:
            q = select(col, func.count()).where(col.in_(ids), *where).group_by(col)
            return {str(uid): int(c) for uid, c in s.execute(q)}

        keys = per_user(ApiKey.user_id, ApiKey.revoked.is_(None))
        captures = per_user(Capture.user_id)
        convs = per_user(Conversation.user_id)
        return [
            UserInfo(u.name, u.consent, keys.get(u.id, 0), captures.get(u.id, 0),
                     convs.get(u.id, 0), u.created)
            for u in users
        ]  # fmt: skip
