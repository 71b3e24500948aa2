"""Retention on a schedule: the gateway applies each tenant's retention every
``retention_interval`` seconds (0: never; then run ``openclone retention apply`` from cron).

The work is :func:`openclone.store.privacy.apply_retention` in a worker thread, so the event
loop never waits on it. Several gateways on one database may run it at the same moment:
its deletes are idempotent, so the second finds little or nothing left to erase. Each
erasure is recorded and audited with the actor ``retention``; a run that erases nothing
leaves no record (a run every hour on every gateway would bury the audit log).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from openclone.store import Store
from openclone.store.privacy import ErasureResult, apply_retention

__all__ = ["ACTOR", "RetentionSchedule"]

log = logging.getLogger("openclone.gateway")
ACTOR = "retention"
FIRST_DELAY = 10.0  # seconds after startup before the first run: let the gateway settle


@dataclass
class RetentionSchedule:
    interval: float  # seconds; 0: off
    last_run: float | None = None  # epoch seconds the last run ended
    last_error: str | None = None
    last_erasures: list[str] = field(default_factory=list)  # erasure ids of the last run
    next_run: float | None = None  # epoch seconds of the next run; None: none is scheduled
    runs: int = 0

    async def run(self, store: Store, stop: asyncio.Event) -> None:
        """Apply retention every ``interval`` seconds until ``stop`` is set."""
        delay = min(self.interval, FIRST_DELAY)
        while self.interval:
            self.next_run = time.time() + delay
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
                return
            except TimeoutError:
                pass
            self.next_run = None  # running now
            await self.apply(store)
            delay = self.interval

    async def apply(self, store: Store) -> list[ErasureResult]:
        """One run; a failure is logged and kept for the admin API, never raised."""
        started = time.monotonic()
        try:
            results = await asyncio.to_thread(apply_retention, store, actor=ACTOR)
        except Exception as exc:  # the next run tries again
            log.exception("retention failed")
            self.last_error = f"{type(exc).__name__}: {exc}"
            results = []
        else:
            self.last_error = None
            for r in results:
                log.info("retention erased %s of tenant %s (erasure %s)",
                         _counts(r), r.target, r.id)  # fmt: skip
            log.debug("retention ran in %.2f s", time.monotonic() - started)
        self.last_run = time.time()
        self.last_erasures = [r.id for r in results]
        self.runs += 1
        return results


def _counts(r: ErasureResult) -> str:
    return ", ".join(f"{v} {k}" for k, v in r.counts.items() if v) or "nothing"
