"""Builds the FastAPI app: the router opens at startup (engines load), closes at shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from openclone import __version__
from openclone.config import Settings
from openclone.gateway import (
    errors,
    routes_embeddings,
    routes_limits,
    routes_openai,
    routes_responses,
    routes_system,
    routes_ui,
)
from openclone.gateway.body_limit import BodyLimit
from openclone.gateway.capture import CaptureSink
from openclone.gateway.metrics import Metrics
from openclone.gateway.security import SecurityMiddleware, allowed_hosts
from openclone.gateway.state import Gateway
from openclone.routing import open_router
from openclone.store import open_store
from openclone.store.writer import CaptureWriter

log = logging.getLogger("openclone.gateway")


def create_app(settings: Settings, capture: CaptureSink | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await asyncio.to_thread(open_store, settings)
        writer: CaptureWriter | None = None
        sink = capture
        if sink is None and settings.capture:
            writer = sink = CaptureWriter(
                store, max_queue=settings.capture_queue, redactor=settings.redactor
            )
        try:
            router = await open_router(settings, store)
        except BaseException:
            store.close()
            raise
        metrics = Metrics(router, writer)
        gw = app.state.gateway = Gateway(
            settings=settings, router=router, metrics=metrics, capture=sink, store=store
        )
        await gw.limiter.sync(store)  # limits bind from the first request
        stop = asyncio.Event()
        syncing = asyncio.create_task(gw.limiter.run(store, settings.rate_limit_sync, stop))
        try:
            yield
        finally:
            stop.set()
            await syncing  # its last sync sends what this gateway counted
            await router.close()
            if writer is not None:
                await asyncio.to_thread(writer.close)  # a clean shutdown loses no capture
            store.close()

    # FastAPI's /docs and /redoc pages load their scripts from a CDN, and no local copy of
    # Swagger UI is installed: they are off. /openapi.json stays for tools and clients.
    app = FastAPI(
        title="OpenClone", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityMiddleware, hosts=allowed_hosts(settings))
    app.include_router(routes_openai.router)
    app.include_router(routes_responses.router)
    app.include_router(routes_embeddings.router)
    app.include_router(routes_system.router)
    app.include_router(routes_limits.router)
    app.include_router(routes_ui.api)
    app.include_router(routes_ui.page)
    app.mount("/static", StaticFiles(directory=routes_ui.STATIC), name="static")
    return app
