"""What the running gateway holds: settings, router, metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from openclone.config import Settings
from openclone.errors import InvalidRequestError
from openclone.gateway.capture import CaptureSink
from openclone.gateway.metrics import Metrics
from openclone.gateway.model_access import ModelOwners
from openclone.gateway.ratelimit import Limiter
from openclone.gateway.retention import RetentionSchedule
from openclone.gateway.splits import ShadowDispatcher
from openclone.routing.router import Router

if TYPE_CHECKING:
    from openclone.store import Store


@dataclass
class Gateway:
    settings: Settings
    router: Router
    metrics: Metrics
    capture: CaptureSink | None = None
    store: Store | None = None
    keys_exist: bool = False  # auth "auto": a key was ever created, so keys are required
    keys_checked: float = 0.0  # monotonic time until which keys_exist is trusted
    keys_seen: object = None  # the store's keys_version() when keys_exist was last read
    limiter: Limiter = field(default_factory=Limiter)  # tenants' and keys' rate limits
    shadow: ShadowDispatcher | None = None  # shadow requests (with a store)
    retention: RetentionSchedule | None = None  # retention on a schedule (with a store)
    models: ModelOwners = field(default_factory=ModelOwners)  # fine-tuned models' tenants

    def __post_init__(self) -> None:
        self.router.hintable = lambda name: not self.models.owned(name)

    def need_store(self) -> Store:
        """The store, for routes that read or write it (a storeless gateway: a 400)."""
        if self.store is None:
            raise InvalidRequestError("this server runs without a store")
        return self.store


# async on purpose: FastAPI runs a sync dependency in a thread pool, a thread hop per request.
async def _gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


GatewayDep = Annotated[Gateway, Depends(_gateway)]
