"""The embeddings resource."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from openclone.gateway.auth import CallerDep, caller
from openclone.gateway.embeddings_serving import embed
from openclone.gateway.state import GatewayDep
from openclone.schema import EmbeddingList, EmbeddingRequest

router = APIRouter(prefix="/v1", dependencies=[Depends(caller)])


@router.post("/embeddings")
async def embeddings(
    body: EmbeddingRequest, who: CallerDep, request: Request, response: Response, gw: GatewayDep
) -> EmbeddingList:
    return await embed(gw, body, who, response, request)
