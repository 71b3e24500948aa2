"""What the running gateway holds: settings, router, metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from openclone.config import Settings
from openclone.gateway.capture import CaptureSink
from openclone.gateway.metrics import Metrics
from openclone.gateway.router import Router


@dataclass
class Gateway:
    settings: Settings
    router: Router
    metrics: Metrics
    capture: CaptureSink | None = None


# async on purpose: FastAPI runs a sync dependency in a thread pool, a thread hop per request.
async def _gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


GatewayDep = Annotated[Gateway, Depends(_gateway)]
