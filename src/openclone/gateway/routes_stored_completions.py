"""Stored chat completions: list, retrieve, update metadata, delete, messages (per tenant).

``POST /v1/chat/completions`` with ``store: true`` keeps them (see :mod:`.serving`).
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request

from openclone.gateway import stored_completions_wire as wire
from openclone.gateway.auth import CallerDep, caller
from openclone.gateway.state import Gateway, GatewayDep
from openclone.store import Store
from openclone.store.stored_completions import (
    CompletionNotFound,
    CompletionPage,
    delete_completion,
    get_completion,
    list_completions,
    update_metadata,
)

router = APIRouter(prefix="/v1", dependencies=[Depends(caller)])

Order = Literal["asc", "desc"]


@router.get("/chat/completions")
async def list_stored(
    request: Request,
    who: CallerDep,
    gw: GatewayDep,
    model: str | None = None,
    after: str | None = None,
    limit: int = Query(default=20, ge=1, le=100),
    order: Order = "asc",
) -> dict[str, Any]:
    metadata = wire.query_metadata(request.query_params.multi_items())
    if gw.store is None:  # a bare model server keeps nothing
        return wire.page_object(CompletionPage([], False))
    page = await asyncio.to_thread(
        list_completions, gw.store, who.tenant, model=model, metadata=metadata, after=after,
        limit=limit, order=order,
    )  # fmt: skip
    return wire.page_object(page)


@router.get("/chat/completions/{completion_id}")
async def retrieve(completion_id: str, who: CallerDep, gw: GatewayDep) -> dict[str, Any]:
    rec = await asyncio.to_thread(get_completion, _store(gw, completion_id), who.tenant,
                                  completion_id)  # fmt: skip
    return wire.completion_object(rec)


@router.post("/chat/completions/{completion_id}")
async def update(
    completion_id: str, who: CallerDep, gw: GatewayDep, body: Any = Body(default=None)
) -> dict[str, Any]:
    metadata = wire.update_metadata_of(body)
    rec = await asyncio.to_thread(
        update_metadata, _store(gw, completion_id), who.tenant, completion_id, metadata
    )
    return wire.completion_object(rec)


@router.delete("/chat/completions/{completion_id}")
async def delete(completion_id: str, who: CallerDep, gw: GatewayDep) -> dict[str, Any]:
    await asyncio.to_thread(delete_completion, _store(gw, completion_id), who.tenant,
                            completion_id)  # fmt: skip
    return wire.deleted_object(completion_id)


@router.get("/chat/completions/{completion_id}/messages")
async def messages(
    completion_id: str,
    request: Request,
    who: CallerDep,
    gw: GatewayDep,
    after: str | None = None,
    limit: int = Query(default=20, ge=1, le=100),
    order: Order = "asc",
) -> dict[str, Any]:
    wire.check_query(request.query_params.keys(), ("after", "limit", "order"))
    rec = await asyncio.to_thread(get_completion, _store(gw, completion_id), who.tenant,
                                  completion_id)  # fmt: skip
    items = wire.message_objects(rec)
    if order == "desc":
        items.reverse()
    if after is not None:
        ids = [m["id"] for m in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    return wire.list_object(items[:limit], len(items) > limit)


def _store(gw: Gateway, completion_id: str) -> Store:
    if gw.store is None:
        raise CompletionNotFound(completion_id)
    return gw.store
