"""Tenants and users (created on first use, by name) and their training consent."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from openclone.errors import InvalidRequestError
from openclone.store.audit import audit
from openclone.store.db import Store
from openclone.store.tables import ApiKey, Tenant, User
from openclone.store.tombstones import check_tenant, check_user

__all__ = [
    "LOCAL",
    "REDACT_MODES",
    "Principal",
    "TenantInfo",
    "create_tenant",
    "effective_consent",
    "ensure_tenant",
    "ensure_user",
    "find_tenant",
    "find_user",
    "get_tenant",
    "list_tenants",
    "set_tenant_policy",
    "set_user_consent",
    "user_consent",
]

REDACT_MODES = ("store", "export", "off")
TENANT_NAME_MAX = 128
USER_NAME_MAX = 256


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


@dataclass(frozen=True)
class TenantInfo:
    name: str
    consent_default: bool
    redact_mode: str
    retention_days: int | None
    users: int
    keys: int
    created: float


def _check_name(name: str, what: str, longest: int) -> str:
    if not name or not name.strip():
        raise InvalidRequestError(f"a {what} name cannot be empty", param=what)
    if len(name) > longest:
        raise InvalidRequestError(
            f"a {what} name is at most {longest} characters, got {len(name)}", param=what
        )
    return name


def find_tenant(s: Session, name: str) -> Tenant | None:
    return s.scalar(select(Tenant).where(Tenant.name == name))


def ensure_tenant(s: Session, name: str, *, started: float | None = None) -> Tenant:
    """The tenant called ``name``, created (consent off, redaction at store) if new.

    A late writer passes when its write began (``started``): it must not bring back a
    tenant erased since (:class:`~openclone.store.tombstones.TenantErased`)."""
    tenant = find_tenant(s, name)
    if tenant is None:
        if started is not None:  # only where a tenant would be created: off the hot path
            check_tenant(s, name, started)
        tenant = Tenant(name=_check_name(name, "tenant", TENANT_NAME_MAX))
        s.add(tenant)
        s.flush()
    return tenant


def find_user(s: Session, tenant: Tenant, name: str) -> User | None:
    return s.scalar(select(User).where(User.tenant_id == tenant.id, User.name == name))


def ensure_user(s: Session, tenant: Tenant, name: str, *, started: float | None = None) -> User:
    """The tenant's user called ``name``, created if new; a late writer passes ``started``
    as for :func:`ensure_tenant` (:class:`~openclone.store.tombstones.UserErased`)."""
    user = find_user(s, tenant, name)
    if user is None:
        if started is not None:  # only where a user would be created: off the hot path
            check_user(s, tenant.id, name, started)
        user = User(tenant_id=tenant.id, name=_check_name(name, "user", USER_NAME_MAX))
        s.add(user)
        s.flush()
    return user


def get_tenant(store: Store, name: str) -> Tenant:
    with store.session() as s:
        tenant = find_tenant(s, name)
        if tenant is None:
            raise InvalidRequestError(f"no tenant named {name!r}", param="tenant")
        return tenant


def list_tenants(store: Store, *, offset: int = 0, limit: int | None = None) -> list[TenantInfo]:
    """Tenants by name, with their users and live keys; ``offset``/``limit`` page them."""
    with store.session() as s:
        users = select(User.tenant_id, func.count().label("n")).group_by(User.tenant_id).subquery()
        keys = (
            select(ApiKey.tenant_id, func.count().label("n"))
            .where(ApiKey.revoked.is_(None))
            .group_by(ApiKey.tenant_id)
            .subquery()
        )
        q = (
            select(Tenant, users.c.n, keys.c.n)
            .outerjoin(users, users.c.tenant_id == Tenant.id)
            .outerjoin(keys, keys.c.tenant_id == Tenant.id)
            .order_by(Tenant.name)
            .offset(offset)
            .limit(limit)
        )
        return [
            TenantInfo(t.name, t.consent_default, t.redact_mode, t.retention_days,
                       nu or 0, nk or 0, t.created)
            for t, nu, nk in s.execute(q)
        ]  # fmt: skip


def _check_policy(redact: str | None, retention_days: int | None) -> None:
    if redact is not None and redact not in REDACT_MODES:
        raise InvalidRequestError(
            f"redact mode must be one of {', '.join(REDACT_MODES)}, not {redact!r}",
            param="redact",
        )
    if retention_days is not None and retention_days < 1:
        raise InvalidRequestError("retention must be at least 1 day", param="retention_days")


def create_tenant(
    store: Store,
    name: str,
    *,
    actor: str,
    consent: bool = False,
    redact: str = "store",
    retention_days: int | None = None,
) -> Tenant:
    """A new tenant (audited); one that exists already is an error, not a change."""
    _check_policy(redact, retention_days)
    exists = InvalidRequestError(f"a tenant named {name!r} exists", param="name",
                                 code="tenant_exists")  # fmt: skip
    try:
        with store.session() as s:
            if find_tenant(s, name) is not None:
                raise exists
            tenant = Tenant(name=_check_name(name, "tenant", TENANT_NAME_MAX),
                            consent_default=consent, redact_mode=redact,
                            retention_days=retention_days)  # fmt: skip
            s.add(tenant)
            s.flush()
            audit(s, actor, "tenant.create", tenant=name, consent_default=consent,
                  redact_mode=redact, retention_days=retention_days)  # fmt: skip
            return tenant
    except IntegrityError:  # created by someone else between our look and our insert
        raise exists from None


def set_tenant_policy(
    store: Store,
    name: str,
    *,
    actor: str,
    consent: bool | None = None,
    redact: str | None = None,
    retention_days: int | None = None,
    clear_retention: bool = False,
    create: bool = True,
) -> Tenant:
    """Change what is given (creating the tenant if new, unless ``create`` is False: then
    an unknown tenant is an error); the change is audited."""
    _check_policy(redact, retention_days)
    with store.session() as s:
        tenant = ensure_tenant(s, name) if create else find_tenant(s, name)
        if tenant is None:
            raise InvalidRequestError(f"no tenant named {name!r}", param="tenant")
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
        u = ensure_user(s, ensure_tenant(s, tenant), user)
        u.consent = consent
        audit(s, actor, "user.consent", tenant=tenant, user=user, consent=consent)


def user_consent(store: Store, tenant: str, user: str | None) -> bool:
    """Whether this person's captures may be trained on, absent a per-request choice."""
    with store.session() as s:
        t = find_tenant(s, tenant)
        if t is None:
            return False  # a tenant not seen yet has the default: off
        u = find_user(s, t, user) if user else None
        return effective_consent(t, u, None)


def effective_consent(tenant: Tenant, user: User | None, request: bool | None) -> bool:
    """The person's own choice, which a request may narrow but never widen; else the
    request's header; else the tenant's default.

    An application sends ``X-OpenClone-Train`` for everyone it serves, so it must not
    override a person who said no (nor train on someone who said yes but this request no).
    """
    if user is not None and user.consent is not None:
        return user.consent and request is not False
    if request is not None:
        return request
    return tenant.consent_default
