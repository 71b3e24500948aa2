"""Builds the FastAPI app: the router opens at startup (engines load), closes at shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from openclone import __version__
from openclone.config import Settings
from openclone.gateway import (
    errors,
    routes_admin,
    routes_batches,
    routes_embeddings,
    routes_files,
    routes_fine_tuning,
    routes_limits,
    routes_loops,
    routes_openai,
    routes_responses,
    routes_review,
    routes_stored_completions,
    routes_system,
    routes_ui,
)
from openclone.gateway.batches_serving import run_batches
from openclone.gateway.body_limit import BodyLimit
from openclone.gateway.capture import CaptureSink
from openclone.gateway.fine_tuning_serving import follow_jobs
from openclone.gateway.loops import LoopProcess, loop_argv
from openclone.gateway.metrics import Metrics
from openclone.gateway.retention import RetentionSchedule
from openclone.gateway.security import SecurityMiddleware, allowed_hosts
from openclone.gateway.splits import ShadowDispatcher
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
        following = asyncio.create_task(follow_jobs(gw, stop))  # fine-tuning jobs' progress
        router.keep(asyncio.create_task(run_batches(gw), name="batches"))  # stops with engines
        gw.retention = RetentionSchedule(settings.retention_interval)
        retaining = asyncio.create_task(gw.retention.run(store, stop))
        shadow = gw.shadow = ShadowDispatcher(
            router, store, settings.redactor, concurrency=settings.shadow_concurrency
        )
        loops = None
        if settings.run_loops:  # a child process: training never runs in the gateway
            loops = LoopProcess(loop_argv(settings.config_file, os.getpid())).start()
        try:
            yield
        finally:
            stop.set()
            if loops is not None:
                await loops.close()  # SIGTERM: its run is recorded paused
            await syncing  # its last sync sends what this gateway counted
            await following
            await retaining  # a run under way finishes: the store stays open for it
            await shadow.close()  # shadow requests still running are dropped
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
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        uploads={"/v1/files": settings.max_file_bytes},
    )
    app.add_middleware(SecurityMiddleware, hosts=allowed_hosts(settings))
    app.include_router(routes_openai.router)
    app.include_router(routes_stored_completions.router)
    app.include_router(routes_responses.router)
    app.include_router(routes_embeddings.router)
    app.include_router(routes_files.router)
    app.include_router(routes_fine_tuning.router)
    app.include_router(routes_batches.router)
    app.include_router(routes_system.router)
    app.include_router(routes_limits.router)
    app.include_router(routes_admin.router)
    app.include_router(routes_review.router)
    app.include_router(routes_loops.router)
    app.include_router(routes_admin.page)
    app.include_router(routes_ui.api)
    app.include_router(routes_ui.page)
    app.mount("/static", StaticFiles(directory=routes_ui.STATIC), name="static")
    return app
