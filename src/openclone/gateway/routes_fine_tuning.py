"""The fine-tuning jobs resource: create, list, retrieve, events, checkpoints, cancel,
pause, resume (tenant-scoped). The work is :mod:`openclone.jobs.fine_tuning`'s."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from openclone.gateway import limits
from openclone.gateway.auth import CallerDep, caller
from openclone.gateway.fine_tuning_serving import sync
from openclone.gateway.fine_tuning_wire import FineTuningJobCreate
from openclone.gateway.routes_files import need_store
from openclone.gateway.state import Gateway, GatewayDep
from openclone.jobs import fine_tuning as ft
from openclone.store import Store
from openclone.store.fine_tuning import (
    event_object,
    get_job_row,
    job_object,
    list_events,
    list_job_rows,
)

router = APIRouter(prefix="/v1/fine_tuning", dependencies=[Depends(caller)])


@router.post("/jobs")
async def create(body: FineTuningJobCreate, who: CallerDep, gw: GatewayDep) -> dict[str, Any]:
    limits.check_request(body, gw.settings)  # the model name's cap, lone surrogates
    req = body.to_request()
    job = await asyncio.to_thread(ft.create_job, need_store(gw), gw.settings, who.tenant, req)
    await gw.models.refresh(gw.store)  # its names are the tenant's from now on
    return job


@router.get("/jobs")
async def list_(
    request: Request,
    who: CallerDep,
    gw: GatewayDep,
    after: str | None = None,
    limit: int = Query(default=20, ge=1, le=100),
) -> dict[str, Any]:
    # metadata[KEY]=VALUE pairs, as the SDK sends the metadata filter.
    wanted = {
        k[len("metadata[") : -1]: v
        for k, v in request.query_params.items()
        if k.startswith("metadata[") and k.endswith("]")
    }
    rows, more = await asyncio.to_thread(
        list_job_rows, need_store(gw), who.tenant, after=after, limit=limit, metadata=wanted
    )
    return {"object": "list", "data": [job_object(r) for r in rows], "has_more": more}


@router.get("/jobs/{job_id}")
async def retrieve(job_id: str, who: CallerDep, gw: GatewayDep) -> dict[str, Any]:
    store = need_store(gw)
    await asyncio.to_thread(get_job_row, store, who.tenant, job_id)  # the tenant's, or 404
    await sync(gw, job_id)
    return job_object(await asyncio.to_thread(get_job_row, store, who.tenant, job_id))


@router.get("/jobs/{job_id}/events")
async def events(
    job_id: str,
    who: CallerDep,
    gw: GatewayDep,
    after: str | None = None,
    limit: int = Query(default=20, ge=1, le=1000),
) -> dict[str, Any]:
    store = need_store(gw)
    await asyncio.to_thread(get_job_row, store, who.tenant, job_id)
    await sync(gw, job_id)
    rows, more = await asyncio.to_thread(
        list_events, store, who.tenant, job_id, after=after, limit=limit
    )
    return {"object": "list", "data": [event_object(e) for e in rows], "has_more": more}


@router.get("/jobs/{job_id}/checkpoints")
async def checkpoints(
    job_id: str,
    who: CallerDep,
    gw: GatewayDep,
    after: str | None = None,
    limit: int = Query(default=10, ge=1, le=100),
) -> dict[str, Any]:
    found = await asyncio.to_thread(
        ft.list_checkpoints, need_store(gw), gw.settings, who.tenant, job_id
    )
    if after is not None:
        ids = [c["id"] for c in found]
        found = found[ids.index(after) + 1 :] if after in ids else []
    page = found[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(found) > limit,
    }


@router.post("/jobs/{job_id}/cancel")
async def cancel(job_id: str, who: CallerDep, gw: GatewayDep) -> dict[str, Any]:
    return await _control(gw, ft.cancel_job, who.tenant, job_id)


@router.post("/jobs/{job_id}/pause")
async def pause(job_id: str, who: CallerDep, gw: GatewayDep) -> dict[str, Any]:
    return await _control(gw, ft.pause_job, who.tenant, job_id)


@router.post("/jobs/{job_id}/resume")
async def resume(job_id: str, who: CallerDep, gw: GatewayDep) -> dict[str, Any]:
    return await _control(gw, ft.resume_job, who.tenant, job_id)


async def _control(
    gw: Gateway, action: Callable[[Store, str, str], dict[str, Any]], tenant: str, job_id: str
) -> dict[str, Any]:
    """Cancel, pause or resume under the job's lock, so a sync of the job running meanwhile
    never takes the train job's stop for the end of the job."""
    store = need_store(gw)
    async with gw.router.lock("fine_tuning", job_id):
        return await asyncio.to_thread(action, store, tenant, job_id)
