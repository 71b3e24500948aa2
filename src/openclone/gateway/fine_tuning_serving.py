"""Following fine-tuning jobs from the server: a job is brought up to date when a client
looks at it and, in the background, every few seconds; when its train job succeeds the
fine-tuned model is registered and this gateway's router learns its names at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from openclone.gateway.state import Gateway
from openclone.jobs.fine_tuning import sync_job
from openclone.routing.open import refresh_registry
from openclone.store.fine_tuning import active_job_ids

__all__ = ["follow_jobs", "sync"]

log = logging.getLogger("openclone.gateway")


async def sync(gw: Gateway, job_id: str) -> None:
    """Bring ``job_id`` up to date (one sync per job at a time in this gateway)."""
    if gw.store is None:
        return
    async with gw.router.lock("fine_tuning", job_id):
        if await asyncio.to_thread(sync_job, gw.store, gw.settings, job_id):
            # Served by both names from the next request on, not the next refresh; under the
            # lock, so no one reads "succeeded" before this router knows the names.
            await refresh_registry(gw.router, gw.store)


async def follow_jobs(gw: Gateway, stop: asyncio.Event, every: float = 2.0) -> None:
    """Sync every active job each ``every`` seconds until ``stop`` is set."""
    while not stop.is_set():
        if gw.store is not None:
            try:
                await gw.models.refresh(gw.store)  # jobs created by other gateways, erasures
                for job_id in await asyncio.to_thread(active_job_ids, gw.store):
                    await sync(gw, job_id)
            except Exception:
                log.exception("following fine-tuning jobs failed; trying again")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)
