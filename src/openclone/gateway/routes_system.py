"""Operator endpoints: health and Prometheus metrics.

``/health`` answers anyone (load balancers have no key) but says only ok or degraded; the
replicas' detail (file paths, upstream URLs, workers) is for admin callers. ``/metrics``
needs ``Authorization: Bearer <metrics_token>`` when that setting is set.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from openclone import __version__
from openclone.errors import AuthenticationError
from openclone.gateway.auth import optional_caller
from openclone.gateway.state import GatewayDep
from openclone.store.accounts import Principal

router = APIRouter()


@router.get("/health")
async def health(
    gw: GatewayDep, who: Annotated[Principal | None, Depends(optional_caller)]
) -> JSONResponse:
    routes = gw.router.routes
    ok = all(route.healthy for route in routes.values())
    body: dict[str, Any] = {"status": "ok" if ok else "degraded"}
    if who is not None and who.is_admin:
        body["version"] = __version__
        body["models"] = {
            name: {"healthy": route.healthy, "replicas": [r.status() for r in route.replicas]}
            for name, route in routes.items()
        }
    # Degraded still answers 200: the gateway is up and serves what it can.
    return JSONResponse(body)


@router.get("/metrics")
async def metrics(request: Request, gw: GatewayDep) -> Response:
    token = gw.settings.metrics_token
    if token is not None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        expected = token.get_secret_value().encode()
        # compare_digest: the time taken tells nothing about how much of the token matched.
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise AuthenticationError(
                "/metrics needs 'Authorization: Bearer <metrics_token>'", code="invalid_token"
            )
    return Response(generate_latest(gw.metrics.registry), media_type=CONTENT_TYPE_LATEST)
