"""Builds the FastAPI app: engines load at startup, close at shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from openclone import __version__
from openclone.config import Settings
from openclone.gateway import errors, routes_openai, routes_system, routes_ui
from openclone.gateway.capture import CaptureSink
from openclone.gateway.discovery import registry_models, trained_models
from openclone.gateway.metrics import Metrics
from openclone.gateway.router import Router
from openclone.gateway.state import Gateway
from openclone.store import Store, open_store
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
            router = await Router.build(settings)
        except BaseException:
            store.close()
            raise
        router.discoverers += [registry_models, trained_models]
        await _refresh_registry(router, store)
        metrics = Metrics(router, writer)
        app.state.gateway = Gateway(
            settings=settings, router=router, metrics=metrics, capture=sink, store=store
        )
        router.start()
        refresher = asyncio.create_task(_refresh_forever(router, store), name="registry")
        try:
            yield
        finally:
            refresher.cancel()
            await router.close()
            if writer is not None:
                await asyncio.to_thread(writer.close)  # a clean shutdown loses no capture
            store.close()

    app = FastAPI(title="OpenClone", version=__version__, lifespan=lifespan)
    errors.install(app)
    app.include_router(routes_openai.router)
    app.include_router(routes_system.router)
    app.include_router(routes_ui.api)
    app.include_router(routes_ui.page)
    app.mount("/static", StaticFiles(directory=routes_ui.STATIC), name="static")
    return app


async def _refresh_registry(router: Router, store: Store) -> None:
    from openclone.registry.versions import resolution_map

    aliases, specs = await asyncio.to_thread(resolution_map, store)
    router.engine_specs = specs
    router.aliases = aliases  # one assignment: requests see the old map or the new one


async def _refresh_forever(router: Router, store: Store, every: float = 1.0) -> None:
    """Promotions made anywhere (the CLI, another gateway) reach this one within a second."""
    while True:
        await asyncio.sleep(every)
        try:
            await _refresh_registry(router, store)
        except Exception:
            log.exception("registry refresh failed; serving the last known aliases")
