"""Rate limits and quotas per tenant and per key, and the usage counters gateways share.

A tenant or a key may have requests per minute (``rpm``), tokens per minute (``tpm``),
concurrent streams (``max_streams``) and tokens per calendar month (``monthly_tokens``);
a limit left ``None`` is not enforced, and a key is held to its own limits and to its
tenant's. Usage is one ``rate_usage`` row per subject and window (the UTC minute, the UTC
month) that every gateway adds its counts to with an atomic ``UPDATE ... SET requests =
requests + :n``, so gateways sharing a database converge on one count without talking to
each other. Admission happens in the gateway without the database
(:mod:`openclone.gateway.ratelimit`); :func:`sync_usage` is its once-a-second exchange.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.orm import Session

from openclone.errors import InvalidRequestError
from openclone.store.accounts import ensure_tenant, find_tenant
from openclone.store.audit import audit
from openclone.store.db import Store
from openclone.store.keys import find_key
from openclone.store.tables import ApiKey, RateLimit, RateUsage, Tenant, now
from openclone.store.upsert import add_to_row

__all__ = [
    "LIMIT_FIELDS",
    "Limits",
    "Subject",
    "Usage",
    "Window",
    "get_limits",
    "minute_of",
    "month_of",
    "month_start",
    "month_usage",
    "set_limits",
    "sync_usage",
]

LIMIT_FIELDS = ("rpm", "tpm", "max_streams", "monthly_tokens")
_MAX = 2**53  # any limit above this is no limit; it also keeps JSON clients exact


@dataclass(frozen=True)
class Limits:
    rpm: int | None = None
    tpm: int | None = None
    max_streams: int | None = None
    monthly_tokens: int | None = None

    def any(self) -> bool:
        return any(v is not None for v in asdict(self).values())

    def as_dict(self) -> dict[str, int | None]:
        return asdict(self)


@dataclass(frozen=True)
class Subject:
    """What one row of limits binds, as a gateway holds it."""

    id: str  # t:<tenant id> | k:<key id>: the usage rows' subject
    tenant_id: str
    label: str  # for messages: "tenant 'acme'" or "key oc-AbCdEfG"
    limits: Limits


Window = tuple[str, str, int]  # (subject, period "m"|"M", start): one usage row
Usage = tuple[int, int]  # (requests, tokens)


def minute_of(t: float) -> int:
    return int(t // 60)


def month_of(t: float) -> int:
    d = dt.datetime.fromtimestamp(t, dt.UTC)
    return d.year * 12 + d.month - 1


def month_start(month: int) -> float:
    """The epoch second at which month number ``month`` begins (UTC)."""
    return dt.datetime(month // 12, month % 12 + 1, 1, tzinfo=dt.UTC).timestamp()


def _check(values: Mapping[str, int | None]) -> None:
    for name, value in values.items():
        if name not in LIMIT_FIELDS:
            raise InvalidRequestError(
                f"unknown limit {name!r}; limits are {', '.join(LIMIT_FIELDS)}", param=name
            )
        # rpm, tpm and max_streams are 32-bit columns (PostgreSQL refuses more); the month's
        # tokens are 64-bit.
        top = _MAX if name == "monthly_tokens" else 2**31 - 1
        if value is not None and not 0 <= value <= top:
            raise InvalidRequestError(
                f"{name} must be a whole number from 0 (no limit) to {top}, got {value}",
                param=name,
            )


def set_limits(
    store: Store,
    *,
    tenant: str | None = None,
    key: str | None = None,
    values: Mapping[str, int | None],
    replace: bool = False,
    actor: str,
) -> Limits:
    """Set a tenant's (created if new) or a key's (by id or prefix) limits; audited.

    ``values`` maps limit names to a number, 0 meaning no limit; with ``replace`` every
    limit not named (or ``None``) is removed, else it is kept. Returns the limits now.
    """
    if (tenant is None) == (key is None):
        raise InvalidRequestError("set the limits of a tenant or of a key")
    _check(values)
    with store.session() as s:
        if key is not None:
            k, tenant_name, _ = find_key(s, key)
            subject, tenant_id, key_id = "k:" + k.id, k.tenant_id, k.id
            target = {"key": k.prefix, "id": k.id, "tenant": tenant_name}
        else:
            t = ensure_tenant(s, tenant or "")
            subject, tenant_id, key_id = "t:" + t.id, t.id, None
            target = {"tenant": t.name}
        row = s.get(RateLimit, subject)
        if row is None:
            row = RateLimit(subject=subject, tenant_id=tenant_id, key_id=key_id)
            s.add(row)
        for name in LIMIT_FIELDS:
            if name in values or replace:
                value = values.get(name)
                setattr(row, name, value or None)  # 0 and None: no limit
        row.updated = now()
        limits = _limits(row)
        audit(s, actor, "limits.set", **target, **limits.as_dict())
        return limits


def get_limits(store: Store, *, tenant: str | None = None, key: str | None = None) -> Limits:
    """A tenant's or a key's limits (all ``None`` when none are set)."""
    with store.session() as s:
        if key is not None:
            subject = "k:" + find_key(s, key)[0].id
        else:
            t = find_tenant(s, tenant or "")
            if t is None:
                raise InvalidRequestError(f"no tenant named {tenant!r}", param="tenant")
            subject = "t:" + t.id
        row = s.get(RateLimit, subject)
        return Limits() if row is None else _limits(row)


def _limits(row: RateLimit) -> Limits:
    return Limits(row.rpm, row.tpm, row.max_streams, row.monthly_tokens)


def month_usage(store: Store, tenant: str, month: int) -> int:
    """Tokens ``tenant`` used in month number ``month`` (as gateways have synced them)."""
    with store.session() as s:
        t = find_tenant(s, tenant)
        if t is None:
            return 0
        q = select(RateUsage.tokens).where(
            RateUsage.subject == "t:" + t.id, RateUsage.period == "M", RateUsage.start == month
        )
        return int(s.scalar(q) or 0)


def sync_usage(
    store: Store,
    deltas: Mapping[Window, tuple[int, int, str]],
    minute: int,
    month: int,
    *,
    prune: bool = False,
) -> tuple[dict[str, Subject], dict[str, Subject], dict[Window, Usage]]:
    """One gateway's exchange with the others: add its counts, read everyone's.

    ``deltas`` maps a usage row to (requests, tokens, tenant id) this gateway counted since
    its last exchange. Returns the limits of tenants (by name) and of live keys (by id), and
    the totals of the current minute's and month's rows. Blocking: call it from a thread.
    """
    with store.session() as s:
        for (subject, period, start), (requests, tokens, tenant_id) in deltas.items():
            _add(s, subject, period, start, requests, tokens, tenant_id)
        if prune:  # minute rows are read for one minute only
            s.execute(delete(RateUsage).where(RateUsage.period == "m", RateUsage.start < minute))
        tenants: dict[str, Subject] = {}
        keys: dict[str, Subject] = {}
        q = (
            select(RateLimit, Tenant.name, ApiKey.prefix)
            .join(Tenant, RateLimit.tenant_id == Tenant.id)
            .outerjoin(ApiKey, RateLimit.key_id == ApiKey.id)
            .where(RateLimit.key_id.is_(None) | ApiKey.revoked.is_(None))
        )
        for row, tenant_name, prefix in s.execute(q):
            limits = _limits(row)
            if not limits.any():
                continue
            if row.key_id is None:
                tenants[tenant_name] = Subject(row.subject, row.tenant_id,
                                               f"tenant {tenant_name!r}", limits)  # fmt: skip
            else:
                keys[row.key_id] = Subject(row.subject, row.tenant_id, f"key {prefix}", limits)
        totals: dict[Window, Usage] = {}
        if tenants or keys:
            current = or_(
                and_(RateUsage.period == "m", RateUsage.start == minute),
                and_(RateUsage.period == "M", RateUsage.start == month),
            )
            q2 = select(RateUsage.subject, RateUsage.period, RateUsage.start,
                        RateUsage.requests, RateUsage.tokens).where(current)  # fmt: skip
            for subject, period, start, requests, tokens in s.execute(q2):
                totals[(subject, period, start)] = (int(requests), int(tokens))
    return tenants, keys, totals


def _add(
    s: Session, subject: str, period: str, start: int, requests: int, tokens: int, tenant_id: str
) -> None:
    """Add to one usage row, creating it if new; atomic against every other gateway."""
    key = {"subject": subject, "period": period, "start": start}
    add_to_row(s, RateUsage, key, {"requests": requests, "tokens": tokens}, tenant_id=tenant_id)
