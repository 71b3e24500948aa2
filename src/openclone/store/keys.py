"""API keys: shown once, stored hashed, scoped, revocable; authentication with a cache."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select

from openclone.errors import InvalidRequestError
from openclone.store.accounts import Principal, tenant_by_name, user_by_name
from openclone.store.audit import audit
from openclone.store.db import Store
from openclone.store.tables import ApiKey, Tenant, User, now

__all__ = [
    "KeyInfo",
    "any_keys",
    "authenticate",
    "cached_principal",
    "create_key",
    "list_keys",
    "revoke_key",
]

_AUTH_TTL = 5.0  # seconds a gateway trusts a cached key; revocation elsewhere lands within it


@dataclass(frozen=True)
class KeyInfo:
    id: str
    prefix: str
    tenant: str
    user: str | None
    scope: str
    created: float
    revoked: float | None


def _hash(token: str) -> str:
    # Keys are 256 random bits, so a plain SHA-256 cannot be brute-forced; a slow password
    # hash would only add latency to every request.
    return hashlib.sha256(token.encode()).hexdigest()


def create_key(
    store: Store, tenant: str, user: str | None = None, admin: bool = False, *, actor: str = "cli"
) -> tuple[KeyInfo, str]:
    """A new key; the plaintext is returned once and never stored."""
    token = "oc-" + secrets.token_urlsafe(32)
    with store.session() as s:
        t = tenant_by_name(s, tenant)
        assert t is not None
        u = user_by_name(s, t, user) if user else None
        key = ApiKey(
            prefix=token[:10],
            hash=_hash(token),
            tenant_id=t.id,
            user_id=u.id if u else None,
            scope="admin" if admin else "user",
        )
        s.add(key)
        s.flush()
        audit(s, actor, "key.create", key=key.id, tenant=tenant, user=user, scope=key.scope)
        info = KeyInfo(key.id, key.prefix, tenant, user, key.scope, key.created, None)
    return info, token


def list_keys(store: Store, tenant: str | None = None) -> list[KeyInfo]:
    with store.session() as s:
        q = (
            select(ApiKey, Tenant.name, User.name)
            .join(Tenant, ApiKey.tenant_id == Tenant.id)
            .outerjoin(User, ApiKey.user_id == User.id)
            .order_by(ApiKey.created)
        )
        if tenant is not None:
            q = q.where(Tenant.name == tenant)
        return [
            KeyInfo(k.id, k.prefix, t, u, k.scope, k.created, k.revoked) for k, t, u in s.execute(q)
        ]


def revoke_key(store: Store, key: str, *, actor: str = "cli") -> KeyInfo:
    """Revoke by id or by the prefix shown in lists."""
    with store.session() as s:
        rows = list(s.scalars(select(ApiKey).where((ApiKey.id == key) | (ApiKey.prefix == key))))
        if not rows:
            raise InvalidRequestError(f"no API key with id or prefix {key!r}")
        if len(rows) > 1:
            raise InvalidRequestError(f"{key!r} matches {len(rows)} keys; use the key id")
        k = rows[0]
        if k.revoked is None:
            k.revoked = now()
        audit(s, actor, "key.revoke", key=k.id)
        tenant = s.get(Tenant, k.tenant_id)
        user = s.get(User, k.user_id) if k.user_id else None
        info = KeyInfo(
            k.id, k.prefix, tenant.name if tenant else "?", user.name if user else None,
            k.scope, k.created, k.revoked,
        )  # fmt: skip
    with store.auth_lock:
        store.auth_cache.clear()
    return info


def any_keys(store: Store) -> bool:
    with store.session() as s:
        return s.scalar(select(ApiKey.id).where(ApiKey.revoked.is_(None)).limit(1)) is not None


def cached_principal(store: Store, token: str) -> tuple[bool, Principal | None]:
    """(True, principal) when the cache knows the key: no database, safe on the event loop."""
    with store.auth_lock:
        hit = store.auth_cache.get(_hash(token))
    if hit is not None and hit[0] > time.monotonic():
        return True, hit[1]
    return False, None


def authenticate(store: Store, token: str) -> Principal | None:
    """The key's principal, or None for an unknown or revoked key."""
    known, principal = cached_principal(store, token)
    if known:
        return principal
    digest = _hash(token)
    t = time.monotonic()
    with store.session() as s:
        row = s.execute(
            select(ApiKey, Tenant.name, User.name)
            .join(Tenant, ApiKey.tenant_id == Tenant.id)
            .outerjoin(User, ApiKey.user_id == User.id)
            .where(ApiKey.hash == digest, ApiKey.revoked.is_(None))
        ).first()
    principal = None
    if row is not None:
        key, tenant, user = row
        principal = Principal(tenant=tenant, user=user, key_id=key.id, scope=key.scope)
    with store.auth_lock:
        if len(store.auth_cache) > 10_000:
            store.auth_cache.clear()
        store.auth_cache[digest] = (t + _AUTH_TTL, principal)
    return principal
