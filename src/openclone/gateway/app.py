"""Builds the FastAPI app: engines load at startup, close at shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from openclone import __version__
from openclone.config import Settings
from openclone.gateway import errors, routes_openai, routes_system
from openclone.gateway.capture import CaptureSink
from openclone.gateway.discovery import trained_models
from openclone.gateway.metrics import Metrics
from openclone.gateway.router import Router
from openclone.gateway.state import Gateway


def create_app(settings: Settings, capture: CaptureSink | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        router = await Router.build(settings)
        router.discoverers.append(trained_models)
        app.state.gateway = Gateway(
            settings=settings, router=router, metrics=Metrics(router), capture=capture
        )
        router.start()
        try:
            yield
        finally:
            await router.close()

    app = FastAPI(title="OpenClone", version=__version__, lifespan=lifespan)
    errors.install(app)
    app.include_router(routes_openai.router)
    app.include_router(routes_system.router)
    return app
