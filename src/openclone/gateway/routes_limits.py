"""``/api/admin/tenants/{tenant}/limits``: a tenant's rate limits, for admin keys only.

``PUT`` replaces them all (a limit left out or ``null`` is removed) and is audited with the
admin key as the actor; running gateways apply it at their next sync (about a second).
``GET`` adds what this gateway counts for the tenant now.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from openclone.errors import InvalidRequestError
from openclone.gateway.auth import AdminDep, caller
from openclone.gateway.security import same_origin
from openclone.gateway.state import Gateway, GatewayDep
from openclone.store import Store
from openclone.store.ratelimits import get_limits, set_limits

__all__ = ["router"]

router = APIRouter(prefix="/api/admin", dependencies=[Depends(same_origin), Depends(caller)])
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
    actor = f"key:{who.key_id}" if who.key_id else "local-admin"
    limits = await asyncio.to_thread(
        set_limits, _store(gw), tenant=tenant, values=body.model_dump(), replace=True, actor=actor
    )
    return {"tenant": tenant, "limits": limits.as_dict()}
