"""Tenants and users (created on first use, by name) and their training consent."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from openclone.errors import InvalidRequestError
from openclone.store.audit import audit
from openclone.store.db import Store
from openclone.store.tables import Tenant, User

__all__ = [
    "Principal",
    "effective_consent",
    "get_tenant",
    "set_tenant_policy",
    "set_user_consent",
    "tenant_by_name",
    "user_by_name",
]

REDACT_MODES = ("store", "export", "off")


@dataclass(frozen=True)
class Principal:
    """Who is calling: from an API key, or the loopback default when no key exists."""

    tenant: str  # tenant name
    user: str | None  # user name; None for keys that serve many people
    key_id: str | None
    scope: str  # admin|user

    @property
    def is_admin(self) -> bool:
        return self.scope == "admin"


# The caller on loopback before any key exists; the person is the request's `user`, if any.
LOCAL = Principal(tenant="default", user=None, key_id=None, scope="admin")


def tenant_by_name(s: Session, name: str, create: bool = True) -> Tenant | None:
    tenant = s.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None and create:
        tenant = Tenant(name=name)
        s.add(tenant)
        s.flush()
    return tenant


def user_by_name(s: Session, tenant: Tenant, name: str, create: bool = True) -> User | None:
    user = s.scalar(select(User).where(User.tenant_id == tenant.id, User.name == name))
    if user is None and create:
        user = User(tenant_id=tenant.id, name=name)
        s.add(user)
        s.flush()
    return user


def get_tenant(store: Store, name: str) -> Tenant:
    with store.session() as s:
        tenant = tenant_by_name(s, name, create=False)
        if tenant is None:
            raise InvalidRequestError(f"no tenant named {name!r}", param="tenant")
        return tenant


def set_tenant_policy(
    store: Store,
    name: str,
    *,
    actor: str,
    consent: bool | None = None,
    redact: str | None = None,
    retention_days: int | None = None,
    clear_retention: bool = False,
) -> Tenant:
    if redact is not None and redact not in REDACT_MODES:
        raise InvalidRequestError(
            f"redact mode must be one of {', '.join(REDACT_MODES)}, not {redact!r}"
        )
    if retention_days is not None and retention_days < 1:
        raise InvalidRequestError("retention must be at least 1 day")
    with store.session() as s:
        tenant = tenant_by_name(s, name)
        assert tenant is not None
        changes: dict[str, object] = {}
        if consent is not None:
            tenant.consent_default = changes["consent_default"] = consent
        if redact is not None:
            tenant.redact_mode = changes["redact_mode"] = redact
        if retention_days is not None or clear_retention:
            tenant.retention_days = changes["retention_days"] = retention_days
        audit(s, actor, "tenant.policy", tenant=name, **changes)
        return tenant


def set_user_consent(
    store: Store, tenant: str, user: str, consent: bool | None, *, actor: str
) -> None:
    """A person's own choice; ``None`` goes back to the tenant's default."""
    with store.session() as s:
        t = tenant_by_name(s, tenant)
        assert t is not None
        u = user_by_name(s, t, user)
        assert u is not None
        u.consent = consent
        audit(s, actor, "user.consent", tenant=tenant, user=user, consent=consent)


def user_consent(store: Store, tenant: str, user: str | None) -> bool:
    with store.session() as s:
        t = tenant_by_name(s, tenant)
        assert t is not None
        u = user_by_name(s, t, user, create=False) if user else None
        return effective_consent(t, u, None)


def effective_consent(tenant: Tenant, user: User | None, request: bool | None) -> bool:
    """The request's header wins, then the person's choice, then the tenant's default."""
    if request is not None:
        return request
    if user is not None and user.consent is not None:
        return user.consent
    return tenant.consent_default
