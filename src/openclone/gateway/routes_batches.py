"""The Batch API resource: create, retrieve, list, cancel (tenant-scoped). Requests run
in the server's background (:mod:`openclone.gateway.batches_serving`)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from openclone.data.openai_files import BATCH_URLS
from openclone.errors import InvalidRequestError, UnsupportedParameter
from openclone.gateway import limits
from openclone.gateway.auth import CallerDep, caller
from openclone.gateway.routes_files import need_store
from openclone.gateway.state import GatewayDep
from openclone.store.batches import cancel_batch, create_batch, get_batch, list_batches

router = APIRouter(prefix="/v1", dependencies=[Depends(caller)])


class BatchCreate(BaseModel):
    model_config = ConfigDict(extra="allow")

    input_file_id: str = Field(min_length=1, max_length=64)
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None = None
    output_expires_after: dict[str, Any] | None = None

    def check_supported(self) -> None:
        for name in self.model_extra or {}:
            raise UnsupportedParameter(f"Unknown parameter: '{name}'.", param=name)
        if self.output_expires_after is not None:
            raise UnsupportedParameter(
                "output_expires_after is not supported: a batch's files stay until deleted",
                param="output_expires_after",
            )
        if self.endpoint not in BATCH_URLS:
            raise UnsupportedParameter(
                f"endpoint {self.endpoint!r} is not supported in a batch; use one of "
                f"{', '.join(BATCH_URLS)}",
                param="endpoint",
            )
        if self.metadata and len(self.metadata) > 16:
            raise InvalidRequestError("metadata holds at most 16 pairs", param="metadata")


@router.post("/batches")
async def create(body: BatchCreate, who: CallerDep, gw: GatewayDep) -> dict[str, Any]:
    limits.check_text(body)  # lone surrogates are no text to look up or keep
    body.check_supported()
    return await asyncio.to_thread(
        create_batch, need_store(gw), who, body.endpoint, body.input_file_id,
        body.completion_window, body.metadata,
    )  # fmt: skip


@router.get("/batches")
async def list_(
    who: CallerDep,
    gw: GatewayDep,
    after: str | None = None,
    limit: int = Query(default=20, ge=1, le=100),
) -> dict[str, Any]:
    page, more = await asyncio.to_thread(
        list_batches, need_store(gw), who.tenant, after=after, limit=limit
    )
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": more,
    }


@router.get("/batches/{batch_id}")
async def retrieve(batch_id: str, who: CallerDep, gw: GatewayDep) -> dict[str, Any]:
    return await asyncio.to_thread(get_batch, need_store(gw), who.tenant, batch_id)


@router.post("/batches/{batch_id}/cancel")
async def cancel(batch_id: str, who: CallerDep, gw: GatewayDep) -> dict[str, Any]:
    return await asyncio.to_thread(cancel_batch, need_store(gw), who.tenant, batch_id)
