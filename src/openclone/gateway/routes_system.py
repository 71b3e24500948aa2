"""Operator endpoints: health and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from openclone import __version__
from openclone.gateway.state import GatewayDep

router = APIRouter()


@router.get("/health")
async def health(gw: GatewayDep) -> JSONResponse:
    models: dict[str, Any] = {
        name: {"healthy": route.healthy, "replicas": [r.status() for r in route.replicas]}
        for name, route in gw.router.routes.items()
    }
    ok = all(m["healthy"] for m in models.values())
    body = {"status": "ok" if ok else "degraded", "version": __version__, "models": models}
    # Degraded still answers 200: the gateway is up and serves what it can.
    return JSONResponse(body)


@router.get("/metrics")
async def metrics(gw: GatewayDep) -> Response:
    return Response(generate_latest(gw.metrics.registry), media_type=CONTENT_TYPE_LATEST)
