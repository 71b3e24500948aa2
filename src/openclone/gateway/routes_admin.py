"""The admin API (``/api/admin``) and its page (``/admin``), for admin keys only.

Every route is guarded at the router (no key: 401; a key that is not an admin's: 403), and
its state-changing ones by the browser checks (:func:`~.security.same_origin`: a JSON body,
a same-origin ``Origin``). Each route calls the library function the CLI calls, in a worker
thread, and every change is audited there with the admin key as the actor
(``key:<id>``). Rate limits are in :mod:`.routes_limits`; bodies in :mod:`.admin_wire`.

An erasure needs ``confirm`` to repeat what is erased: a tenant's name, a person's name, a
conversation's or a capture's id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse

from openclone.errors import InvalidRequestError
from openclone.gateway.admin_wire import (
    AuditListing,
    AuditOut,
    Confirm,
    ErasureBody,
    ErasureListing,
    ErasureOut,
    ErasureRecordOut,
    KeyOut,
    KeyPatch,
    Listing,
    NewKey,
    NewKeyOut,
    NewTenant,
    RetentionOut,
    RetentionRun,
    TenantDetailOut,
    TenantOut,
    TenantPatch,
    UserOut,
)
from openclone.gateway.auth import AdminDep, admin, audit_actor
from openclone.gateway.routes_ui import PAGE_HEADERS, STATIC
from openclone.gateway.security import same_origin
from openclone.gateway.state import Gateway, GatewayDep
from openclone.store.accounts import (
    Principal,
    create_tenant,
    get_tenant,
    list_tenants,
    set_tenant_policy,
)
from openclone.store.admin import list_users, tenant_detail
from openclone.store.audit import list_audit
from openclone.store.keys import create_key, list_keys, revoke_key, set_key_scope
from openclone.store.lineage import (
    affected_exports,
    affected_models,
    affected_runs,
    erasures_since,
)
from openclone.store.privacy import ErasureResult, erase, run_retention
from openclone.store.tables import AuditEntry
from openclone.store.taint import list_taints

__all__ = ["page", "router"]

# same_origin first: a cross-site request is refused before it costs a key lookup.
router = APIRouter(prefix="/api/admin", dependencies=[Depends(same_origin), Depends(admin)])
page = APIRouter()

T = TypeVar("T")
Offset = Annotated[int, Query(ge=0)]
Limit = Annotated[int, Query(ge=1, le=500)]


def _listing(rows: list[T], limit: int, out: Callable[[T], object]) -> dict[str, object]:
    """A page of ``limit`` from ``limit + 1`` rows read: the extra one says there is more."""
    return {"data": [out(r) for r in rows[:limit]], "has_more": len(rows) > limit}


def _confirmed(given: str, what: str | None) -> None:
    if not what or given != what:
        raise InvalidRequestError(
            f"erasure cannot be undone: set 'confirm' to {what!r} to go ahead",
            param="confirm",
            code="confirmation_required",
        )


@page.get("/admin", include_in_schema=False)
async def admin_page() -> FileResponse:
    # The data is only what /api/admin gives an admin key; the page itself is public.
    return FileResponse(STATIC / "admin.html", headers=PAGE_HEADERS)


# ---- tenants ---------------------------------------------------------------------------


@router.get("/tenants")
async def tenants(gw: GatewayDep, offset: Offset = 0, limit: Limit = 50) -> Listing[TenantOut]:
    rows = await asyncio.to_thread(list_tenants, gw.need_store(), offset=offset, limit=limit + 1)
    return Listing[TenantOut].model_validate(_listing(rows, limit, TenantOut.of))


@router.post("/tenants", status_code=201)
async def new_tenant(body: NewTenant, who: AdminDep, gw: GatewayDep) -> TenantDetailOut:
    store = gw.need_store()

    def create() -> TenantDetailOut:
        create_tenant(store, body.name, actor=audit_actor(who), consent=body.consent_default,
                      redact=body.redact_mode, retention_days=body.retention_days)  # fmt: skip
        return TenantDetailOut.of(tenant_detail(store, body.name))

    return await asyncio.to_thread(create)


@router.get("/tenants/{tenant}")
async def tenant(tenant: str, gw: GatewayDep) -> TenantDetailOut:
    return TenantDetailOut.of(await asyncio.to_thread(tenant_detail, gw.need_store(), tenant))


@router.patch("/tenants/{tenant}")
async def patch_tenant(
    tenant: str, body: TenantPatch, who: AdminDep, gw: GatewayDep
) -> TenantDetailOut:
    store = gw.need_store()
    given = body.model_fields_set

    def change() -> TenantDetailOut:
        set_tenant_policy(
            store, tenant, actor=audit_actor(who), consent=body.consent_default,
            redact=body.redact_mode, retention_days=body.retention_days,
            clear_retention="retention_days" in given and body.retention_days is None,
            create=False,
        )  # fmt: skip
        return TenantDetailOut.of(tenant_detail(store, tenant))

    return await asyncio.to_thread(change)


@router.post("/tenants/{tenant}/erase")
async def erase_tenant(tenant: str, body: Confirm, who: AdminDep, gw: GatewayDep) -> ErasureOut:
    """Everything of the tenant: its people, keys, captures, conversations (``confirm``:
    the tenant's name)."""
    _confirmed(body.confirm, tenant)
    return await _erase(gw, who, tenant=tenant)


@router.get("/tenants/{tenant}/users")
async def users(
    tenant: str, gw: GatewayDep, offset: Offset = 0, limit: Limit = 50
) -> Listing[UserOut]:
    rows = await asyncio.to_thread(
        list_users, gw.need_store(), tenant, offset=offset, limit=limit + 1
    )
    return Listing[UserOut].model_validate(_listing(rows, limit, UserOut.of))


@router.post("/tenants/{tenant}/users/{user:path}/erase")
async def erase_user(
    tenant: str, user: str, body: Confirm, who: AdminDep, gw: GatewayDep
) -> ErasureOut:
    """A person: their captures, conversations, feedback, keys (``confirm``: their name)."""
    _confirmed(body.confirm, user)
    return await _erase(gw, who, tenant=tenant, user=user)


# ---- keys ------------------------------------------------------------------------------


@router.get("/tenants/{tenant}/keys")
async def keys(
    tenant: str, gw: GatewayDep, offset: Offset = 0, limit: Limit = 100
) -> Listing[KeyOut]:
    rows = await asyncio.to_thread(
        list_keys, gw.need_store(), tenant, offset=offset, limit=limit + 1
    )
    return Listing[KeyOut].model_validate(_listing(rows, limit, KeyOut.of))


@router.post("/tenants/{tenant}/keys", status_code=201)
async def new_key(tenant: str, body: NewKey, who: AdminDep, gw: GatewayDep) -> NewKeyOut:
    store = gw.need_store()

    def create() -> NewKeyOut:
        get_tenant(store, tenant)  # a key does not create its tenant here: POST /tenants does
        info, secret = create_key(store, tenant, body.user, body.admin, actor=audit_actor(who))
        return NewKeyOut(key=KeyOut.of(info), secret=secret)

    return await asyncio.to_thread(create)


@router.patch("/keys/{key}")
async def patch_key(key: str, body: KeyPatch, who: AdminDep, gw: GatewayDep) -> KeyOut:
    info = await asyncio.to_thread(
        set_key_scope, gw.need_store(), key, body.admin, actor=audit_actor(who)
    )
    return KeyOut.of(info)


@router.post("/keys/{key}/revoke")
async def revoke(key: str, who: AdminDep, gw: GatewayDep) -> KeyOut:
    """Every gateway refuses the key from its next request on (see ``store.keys``)."""
    return KeyOut.of(
        await asyncio.to_thread(revoke_key, gw.need_store(), key, actor=audit_actor(who))
    )


# ---- erasure ---------------------------------------------------------------------------


async def _erase(gw: Gateway, who: Principal, **target: str | None) -> ErasureOut:
    result: ErasureResult = await asyncio.to_thread(
        lambda: erase(gw.need_store(), actor=audit_actor(who), **target)
    )
    return ErasureOut.of(result)


@router.post("/erasures")
async def new_erasure(body: ErasureBody, who: AdminDep, gw: GatewayDep) -> ErasureOut:
    _confirmed(body.confirm, body.capture or body.conversation or body.user or body.tenant)
    return await _erase(gw, who, tenant=body.tenant, user=body.user,
                        conversation=body.conversation, capture=body.capture)  # fmt: skip


@router.get("/erasures")
async def erasures(
    gw: GatewayDep,
    since: Annotated[float | None, Query(description="epoch seconds")] = None,
    offset: Offset = 0,
    limit: Limit = 50,
) -> ErasureListing:
    """Erasures, newest first, with what their data had become (``audit erasures``)."""
    store, home = gw.need_store(), gw.settings.home

    def read() -> ErasureListing:
        rows = erasures_since(store, since, offset=offset, limit=limit + 1)
        return ErasureListing.model_validate({
            **_listing(rows, limit, ErasureRecordOut.of),
            "affected_exports": [asdict(x) for x in affected_exports(store, since)],
            "affected_models": [asdict(m) for m in affected_models(store, since)],
            "affected_runs": [asdict(r) for r in affected_runs(store, since, home)],
            "taints": [asdict(t) for t in list_taints(store)],
        })  # fmt: skip

    return await asyncio.to_thread(read)


# ---- retention -------------------------------------------------------------------------


@router.get("/retention")
async def retention(gw: GatewayDep) -> RetentionOut:
    """The schedule and each tenant's retention; set a tenant's with ``PATCH /tenants/T``."""
    rows = await asyncio.to_thread(list_tenants, gw.need_store())
    sched = gw.retention
    return RetentionOut(
        interval=gw.settings.retention_interval,
        last_run=sched.last_run if sched else None,
        next_run=sched.next_run if sched else None,
        last_error=sched.last_error if sched else None,
        last_erasures=sched.last_erasures if sched else [],
        tenants={t.name: t.retention_days for t in rows if t.retention_days},
    )


@router.post("/retention/run")
async def run_retention_now(who: AdminDep, gw: GatewayDep) -> RetentionRun:
    """Apply every tenant's retention now (audited as ``retention.run``)."""
    results = await asyncio.to_thread(run_retention, gw.need_store(), actor=audit_actor(who))
    return RetentionRun(data=[ErasureOut.of(r) for r in results])


# ---- audit -----------------------------------------------------------------------------


@router.get("/audit")
async def audit_log(
    gw: GatewayDep,
    actor: str | None = None,
    action: Annotated[str | None, Query(description="exact, or a prefix: key finds key.*")] = None,
    since: Annotated[float | None, Query(description="epoch seconds")] = None,
    after: Annotated[int | None, Query(description="the last_id of the page before")] = None,
    limit: Limit = 50,
) -> AuditListing:
    def read() -> list[AuditEntry]:
        return list_audit(
            gw.need_store(), limit + 1, action=action, actor=actor, since=since, after=after
        )

    rows = await asyncio.to_thread(read)
    shown = _listing(rows, limit, AuditOut.of)
    return AuditListing.model_validate({**shown, "last_id": rows[:limit][-1].id if rows else None})
