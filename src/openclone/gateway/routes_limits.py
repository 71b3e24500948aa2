"""``/api/admin/tenants/{tenant}/limits`` and ``/api/admin/keys/{key}/limits``: a tenant's
and a key's rate limits, for admin keys only (the rest of the admin API is
:mod:`openclone.gateway.routes_admin`).

``PUT`` replaces them all (a limit left out or ``null`` is removed) and is audited with the
admin key as the actor; running gateways apply it at their next sync (about a second).
A tenant's ``GET`` adds what this gateway counts for the tenant now.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from openclone.errors import InvalidRequestError
from openclone.gateway.auth import AdminDep, admin, audit_actor
from openclone.gateway.security import same_origin
from openclone.gateway.state import Gateway, GatewayDep
from openclone.store import Store
from openclone.store.ratelimits import get_limits, set_limits

__all__ = ["router"]

router = APIRouter(prefix="/api/admin", dependencies=[Depends(same_origin), Depends(admin)])
_NUMBER = Field(default=None, ge=0, le=2**53)


class LimitsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt limit must not pass as "none"

    rpm: int | None = _NUMBER
    tpm: int | None = _NUMBER
    max_streams: int | None = _NUMBER
    monthly_tokens: int | None = _NUMBER


def _store(gw: Gateway) -> Store:
    if gw.store is None:
        raise InvalidRequestError("this server runs without a store")
    return gw.store


@router.get("/tenants/{tenant}/limits")
async def get_tenant_limits(tenant: str, who: AdminDep, gw: GatewayDep) -> dict[str, Any]:
    limits = await asyncio.to_thread(get_limits, _store(gw), tenant=tenant)
    return {"tenant": tenant, "limits": limits.as_dict(), "usage": gw.limiter.usage(tenant)}


@router.put("/tenants/{tenant}/limits")
async def put_tenant_limits(
    tenant: str, body: LimitsBody, who: AdminDep, gw: GatewayDep
) -> dict[str, Any]:
    limits = await asyncio.to_thread(
        set_limits, _store(gw), tenant=tenant, values=body.model_dump(), replace=True,
        actor=audit_actor(who),
    )  # fmt: skip
    return {"tenant": tenant, "limits": limits.as_dict()}


@router.get("/keys/{key}/limits")
async def get_key_limits(key: str, who: AdminDep, gw: GatewayDep) -> dict[str, Any]:
    limits = await asyncio.to_thread(get_limits, _store(gw), key=key)
    return {"key": key, "limits": limits.as_dict()}


@router.put("/keys/{key}/limits")
async def put_key_limits(
    key: str, body: LimitsBody, who: AdminDep, gw: GatewayDep
) -> dict[str, Any]:
    limits = await asyncio.to_thread(
        set_limits,
        _store(gw),
        key=key,
        values=body.model_dump(),
        replace=True,
        actor=audit_actor(who),
    )
    return {"key": key, "limits": limits.as_dict()}
