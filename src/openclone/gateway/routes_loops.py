"""The loops over HTTP (``/api/admin/loops``): the admin page's Loops section.

Guarded as the rest of the admin API (:mod:`.routes_admin`): admin keys only, and the
browser checks on every state change. Each route calls the function the CLI
(``openclone loop status|pause|resume``) calls, in a worker thread; pause and resume are
audited there with the admin key as the actor. A name not in ``[[loops]]`` is a 404.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from openclone.errors import APIError, ConfigError
from openclone.gateway.auth import AdminDep, admin, audit_actor
from openclone.gateway.security import same_origin
from openclone.gateway.state import GatewayDep
from openclone.loop.config import load_loops
from openclone.loop.state import set_paused
from openclone.loop.status import SERIES_RUNS, find_loop, loop_status, run_series

__all__ = ["router"]

router = APIRouter(prefix="/api/admin/loops", dependencies=[Depends(same_origin), Depends(admin)])


@contextmanager
def _configured() -> Iterator[None]:
    """A broken ``[[loops]]`` is the operator's to fix: a 500 that says what is wrong
    (the server starts without reading it: only the loops process runs them)."""
    try:
        yield
    except ConfigError as exc:
        raise APIError(f"the server's [[loops]] configuration is invalid: {exc}") from exc


@router.get("")
async def loops(gw: GatewayDep) -> dict[str, Any]:
    """Every configured loop's status: the rows of ``openclone loop status --json``."""
    store, settings = gw.need_store(), gw.settings

    def read() -> list[dict[str, Any]]:
        with _configured():
            loops = load_loops(settings)
        return [loop_status(store, settings, loop) for loop in loops]

    return {"object": "list", "data": await asyncio.to_thread(read)}


@router.get("/{name}/runs")
async def runs(
    name: str, gw: GatewayDep, limit: Annotated[int, Query(ge=1, le=500)] = SERIES_RUNS
) -> dict[str, Any]:
    """The newest ``limit`` runs, oldest first: win rates, spend and $/1M at each run's end."""
    store, settings = gw.need_store(), gw.settings

    def read() -> list[dict[str, Any]]:
        with _configured():
            loop = find_loop(settings, name)
        return run_series(store, settings, loop, limit)

    return {"object": "list", "loop": name, "data": await asyncio.to_thread(read)}


async def _switch(name: str, paused: bool, who: AdminDep, gw: GatewayDep) -> dict[str, Any]:
    store, settings = gw.need_store(), gw.settings

    def switch() -> dict[str, Any]:
        with _configured():
            loop = find_loop(settings, name)
        set_paused(store, loop.name, paused, actor=audit_actor(who))
        return loop_status(store, settings, loop)

    return await asyncio.to_thread(switch)


@router.post("/{name}/pause")
async def pause(name: str, who: AdminDep, gw: GatewayDep) -> dict[str, Any]:
    """Start no new run; a running one stops after its current step (``loop.pause``)."""
    return await _switch(name, True, who, gw)


@router.post("/{name}/resume")
async def resume(name: str, who: AdminDep, gw: GatewayDep) -> dict[str, Any]:
    """Undo pause: the next run or scheduler turn continues where it stopped."""
    return await _switch(name, False, who, gw)
