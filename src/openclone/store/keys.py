"""API keys: shown once, stored hashed, scoped, revocable; authentication with a cache.

Revocation is at once: in the process that revokes (its cache is cleared) and, on SQLite,
in every process on the machine (the key stamp, :meth:`Store.keys_version`, is one stat()
per request). Gateways on PostgreSQL cannot see each other's stamp, so their cache lives
``AUTH_TTL`` seconds: a key revoked elsewhere works at most that long there.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from openclone.errors import InvalidRequestError
from openclone.store.accounts import Principal, ensure_tenant, ensure_user, find_tenant
from openclone.store.audit import audit
from openclone.store.db import Store
from openclone.store.tables import ApiKey, AuditEntry, Tenant, User, now

__all__ = [
    "AUTH_TTL",
    "KeyInfo",
    "any_keys",
    "authenticate",
    "cached_principal",
    "create_key",
    "find_key",
    "keys_ever_created",
    "list_keys",
    "revoke_key",
    "set_key_scope",
]

log = logging.getLogger("openclone.store")
AUTH_TTL = 1.0  # seconds a gateway trusts a cached key (one query per key per second)
_CACHE_MAX = 10_000
PREFIX_LEN = 10  # "oc-" and 7 characters: enough to tell keys apart in a list


@dataclass(frozen=True)
class KeyInfo:
    id: str
    prefix: str
    tenant: str
    user: str | None
    scope: str
    created: float
    revoked: float | None
    last_used: float | None = None


def _hash(token: str) -> str:
    # Keys are 256 random bits, so a plain SHA-256 cannot be brute-forced; a slow password
    # hash (bcrypt, argon2) exists for low-entropy secrets and would only add latency to
    # every request.
    return hashlib.sha256(token.encode()).hexdigest()


def _info(k: ApiKey, tenant: str, user: str | None) -> KeyInfo:
    return KeyInfo(k.id, k.prefix, tenant, user, k.scope, k.created, k.revoked, k.last_used)


def create_key(
    store: Store, tenant: str, user: str | None = None, admin: bool = False, *, actor: str = "cli"
) -> tuple[KeyInfo, str]:
    """A new key for ``tenant`` (and ``user``), both created if new.

    Returns the record and the plaintext, which is never stored: show it once.
    """
    with store.session() as s:
        while True:  # a prefix names one key, so it alone can revoke it
            token = "oc-" + secrets.token_urlsafe(32)
            if s.scalar(select(ApiKey.id).where(ApiKey.prefix == token[:PREFIX_LEN])) is None:
                break
        t = ensure_tenant(s, tenant)
        u = ensure_user(s, t, user) if user is not None else None
        key = ApiKey(
            prefix=token[:PREFIX_LEN],
            hash=_hash(token),
            tenant_id=t.id,
            user_id=u.id if u else None,
            scope="admin" if admin else "user",
        )
        s.add(key)
        s.flush()
        audit(s, actor, "key.create", key=key.prefix, id=key.id, tenant=tenant, user=user,
              scope=key.scope)  # fmt: skip
        info = _info(key, tenant, user)
    store.keys_changed()  # after the commit: a gateway that looks now finds the key
    return info, token


def list_keys(
    store: Store, tenant: str | None = None, *, offset: int = 0, limit: int | None = None
) -> list[KeyInfo]:
    """Every key (revoked ones too), oldest first; only ``tenant``'s when given;
    ``offset``/``limit`` page them."""
    with store.session() as s:
        if tenant is not None and find_tenant(s, tenant) is None:
            raise InvalidRequestError(f"no tenant named {tenant!r}", param="tenant")
        q = (
            select(ApiKey, Tenant.name, User.name)
            .join(Tenant, ApiKey.tenant_id == Tenant.id)
            .outerjoin(User, ApiKey.user_id == User.id)
            .order_by(ApiKey.created)
        )
        if tenant is not None:
            q = q.where(Tenant.name == tenant)
        return [_info(k, t, u) for k, t, u in s.execute(q.offset(offset).limit(limit))]


def find_key(s: Session, key: str) -> tuple[ApiKey, str, str | None]:
    """(the key, its tenant's name, its user's name) by id or by the prefix shown in lists."""
    rows = s.execute(
        select(ApiKey, Tenant.name, User.name)
        .join(Tenant, ApiKey.tenant_id == Tenant.id)
        .outerjoin(User, ApiKey.user_id == User.id)
        .where((ApiKey.id == key) | (ApiKey.prefix == key))
    ).all()
    if not rows:
        raise InvalidRequestError(
            f"no API key with id or prefix {key!r} (see `openclone keys list`)", param="key"
        )
    if len(rows) > 1:
        raise InvalidRequestError(f"{key!r} matches {len(rows)} keys; use the key id", param="key")
    k, tenant, user = rows[0]
    return k, tenant, user


def revoke_key(store: Store, key: str, *, actor: str = "cli") -> KeyInfo:
    """Revoke by id or by the prefix shown in lists; this store forgets it at once."""
    with store.session() as s:
        k, tenant, user = find_key(s, key)
        if k.revoked is None:
            k.revoked = now()
        audit(s, actor, "key.revoke", key=k.prefix, id=k.id, tenant=tenant, user=user)
        info = _info(k, tenant, user)
    store.keys_changed()
    return info


def set_key_scope(store: Store, key: str, admin: bool, *, actor: str) -> KeyInfo:
    """Make a key (by id or prefix) an admin key or a user key; audited, and seen at once
    like a revocation (cached principals carry the scope)."""
    with store.session() as s:
        k, tenant, user = find_key(s, key)
        k.scope = "admin" if admin else "user"
        audit(s, actor, "key.scope", key=k.prefix, id=k.id, tenant=tenant, user=user,
              scope=k.scope)  # fmt: skip
        info = _info(k, tenant, user)
    store.keys_changed()
    return info


def any_keys(store: Store) -> bool:
    """Whether any key is live (on loopback, keys become required once one exists)."""
    with store.session() as s:
        return s.scalar(select(ApiKey.id).where(ApiKey.revoked.is_(None)).limit(1)) is not None


def keys_ever_created(store: Store) -> bool:
    """Whether this store has ever had a key, revoked or erased ones included (the audit log
    keeps ``key.create`` when erasure deletes the key): keyless "auto" mode ends for good."""
    with store.session() as s:
        if s.scalar(select(ApiKey.id).limit(1)) is not None:
            return True
        q = select(AuditEntry.id).where(AuditEntry.action == "key.create").limit(1)
        return s.scalar(q) is not None


def cached_principal(store: Store, token: str) -> tuple[bool, Principal | None]:
    """(True, principal) when the cache knows the key: no database, safe on the event loop.

    A known-bad key is cached too (as ``None``), so guessing costs no database work.
    """
    version = store.keys_version()
    with store.auth_lock:
        if version != store.auth_seen:  # a key changed somewhere: forget every answer
            store.auth_cache.clear()
            store.auth_seen = version
        hit = store.auth_cache.get(_hash(token))
    if hit is not None and hit[0] > time.monotonic():
        return True, hit[1]
    return False, None


def authenticate(store: Store, token: str) -> Principal | None:
    """The key's principal, or None for an unknown or revoked key.

    Blocking (one query on a cache miss): call it from a worker thread.
    """
    known, principal = cached_principal(store, token)
    if known:
        return principal
    digest = _hash(token)
    t = time.monotonic()
    version = store.keys_version()
    with store.session() as s:
        row = s.execute(
            select(ApiKey.id, ApiKey.scope, Tenant.name, User.name)
            .join(Tenant, ApiKey.tenant_id == Tenant.id)
            .outerjoin(User, ApiKey.user_id == User.id)
            .where(ApiKey.hash == digest, ApiKey.revoked.is_(None))
        ).first()
    if row is not None:
        key_id, scope, tenant, user = row
        principal = Principal(tenant=tenant, user=user, key_id=key_id, scope=scope)
        _touch(store, key_id)
    with store.auth_lock:
        if version != store.auth_seen:
            return principal  # a key changed while we looked: this answer may be stale
        if len(store.auth_cache) >= _CACHE_MAX:
            store.auth_cache.clear()
        store.auth_cache[digest] = (t + AUTH_TTL, principal)
    return principal


def _touch(store: Store, key_id: str) -> None:
    # Once per cache miss, i.e. at most once per TTL per gateway. Best effort: a busy
    # database must not turn a valid key into a failed request.
    try:
        with store.session() as s:
            s.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used=now()))
    except SQLAlchemyError:
        log.warning("could not record the use of key %s", key_id, exc_info=True)
