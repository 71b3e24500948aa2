"""The Responses API resource: create, retrieve, delete, input items (tenant-scoped)."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse

from openclone.errors import InvalidRequestError
from openclone.gateway.auth import CallerDep, caller
from openclone.gateway.responses_serving import create_response
from openclone.gateway.responses_stream import replay
from openclone.gateway.responses_wire import ResponseRequest, check_include
from openclone.gateway.state import Gateway, GatewayDep
from openclone.store import Store
from openclone.store.responses import ResponseNotFound, delete_response, get_response

router = APIRouter(prefix="/v1", dependencies=[Depends(caller)])


@router.post("/responses")
async def create(body: ResponseRequest, request: Request, gw: GatewayDep) -> Response:
    return await create_response(gw, request, body)


@router.get("/responses/{response_id}", response_model=None)
async def retrieve(
    response_id: str,
    who: CallerDep,
    gw: GatewayDep,
    stream: bool = False,
    starting_after: int | None = Query(default=None, ge=0),
    include: list[str] | None = Query(default=None),
    include_brackets: list[str] | None = Query(default=None, alias="include[]"),  # the SDK's
    include_obfuscation: bool | None = None,  # stream padding: nothing to hide in a replay
) -> dict[str, Any] | StreamingResponse:
    """The stored response; with ``stream`` its events again, as it was streamed. Logprobs
    are in it when its creation asked for them (``include`` here cannot add them later)."""
    check_include([*(include or ()), *(include_brackets or ())])
    if starting_after is not None and not stream:
        raise InvalidRequestError("starting_after needs stream=true", param="starting_after")
    rec = await asyncio.to_thread(get_response, _store(gw, response_id), who.tenant, response_id)
    if not stream:
        return rec.body
    events = replay(rec.body, starting_after)
    return StreamingResponse(
        iter(events),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.delete("/responses/{response_id}")
async def delete(response_id: str, who: CallerDep, gw: GatewayDep) -> dict[str, Any]:
    await asyncio.to_thread(delete_response, _store(gw, response_id), who.tenant, response_id)
    return {"id": response_id, "object": "response", "deleted": True}


@router.get("/responses/{response_id}/input_items")
async def input_items(
    response_id: str,
    who: CallerDep,
    gw: GatewayDep,
    limit: int = Query(default=20, ge=1, le=100),
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
) -> dict[str, Any]:
    rec = await asyncio.to_thread(get_response, _store(gw, response_id), who.tenant, response_id)
    items = rec.input_items if order == "asc" else rec.input_items[::-1]
    if after is not None:
        ids = [it["id"] for it in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    page = items[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(items) > limit,
    }


def _store(gw: Gateway, response_id: str) -> Store:
    if gw.store is None:  # a bare model server keeps nothing
        raise ResponseNotFound(response_id)
    return gw.store
