"""OpenAI endpoints: thin routes over the serving logic."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from openclone.errors import ModelNotFound
from openclone.gateway import limits, serving
from openclone.gateway.auth import CallerDep, caller
from openclone.gateway.state import GatewayDep
from openclone.schema import ChatCompletionRequest, CompletionRequest, ModelCard, ModelList

router = APIRouter(prefix="/v1", dependencies=[Depends(caller)])


@router.post("/chat/completions")
async def chat_completions(
    body: ChatCompletionRequest, request: Request, gw: GatewayDep
) -> Response:
    return await serving.serve(gw, request, body)


@router.post("/completions")
async def completions(body: CompletionRequest, request: Request, gw: GatewayDep) -> Response:
    return await serving.serve(gw, request, body)


@router.get("/models")
async def list_models(gw: GatewayDep, who: CallerDep) -> ModelList:
    names = await gw.models.visible(gw.store, who, gw.router.names())  # not others' fine-tunes
    return ModelList(data=[_card(gw, name) for name in names])


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, gw: GatewayDep, who: CallerDep) -> ModelCard:
    limits.check_model_name(model_id, gw.settings)
    await gw.models.check(gw.store, who, model_id, *gw.router.pin(model_id))
    await gw.router.route_for(gw.router.pin(model_id)[1])
    return _card(gw, model_id)


def _card(gw: GatewayDep, name: str) -> ModelCard:
    try:
        route = gw.router.resolve(gw.router.pin(name)[1])
    except ModelNotFound:  # a registry version not loaded yet: it loads on first use
        return ModelCard(id=name, engine="registry", replicas=[])
    return ModelCard(
        id=name,
        engine=route.config.engine,
        replicas=[r.status() for r in route.replicas],
    )
