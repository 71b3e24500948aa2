"""Shadow and canary at the gateway: which side of a canary answers, and shadow requests.

**Canary.** :func:`canary_arm` places a request for a name with an active canary on the
candidate's side or the incumbent's (sticky, see :mod:`openclone.routing.splits`), and
:func:`count_arm` counts its outcome for the rollback rule: answered (with its latency) or
failed with a 5xx; client errors and disconnects are not counted. A failed canary request
reaches its caller as the error it is; the rollback after ``min_requests`` bounds how many.

**Shadow.** A sampled share of an alias's live chat requests is answered again by a
candidate in the background — never returned to the caller, never delaying the answer. A
canary with a pair budget is shadowed the other way round: the incumbent answers the
canary's requests again, so a judge can compare the two on the canary's own traffic.

The gateway offers each answered chat request for a name in shadow (``openclone registry
shadow``, or a loop's shadow step) after its answer is produced: for a stream, after the
last chunk was sent. :meth:`ShadowDispatcher.offer` decides in microseconds, without the
database: a shadow's share (a random draw; a canary's requests were drawn when their arm
was chosen), its budget (pairs stored as of the last
refresh, one a second, plus those in flight here; a split whose budget the store reported
spent is not offered again), consent, and this gateway's bound on shadow requests in
flight (``shadow_concurrency``: when all are busy the request is not shadowed, and counted
as ``busy``). The shadow call then runs as an asyncio task, and its pair is written from a
worker thread by :func:`openclone.store.splits.write_pair`, which settles consent and the
budget in the store.

Consent: a pair holds the person's text like a capture and exists to judge a model for
training decisions, so it is kept only where the capture could be trained on. An explicit
``X-OpenClone-Train: false`` is never shadowed (that "no" always wins); a tenant and person
the store found without consent are not shadowed again for ``_NO_CONSENT_TTL`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass

from fastapi import Request

from openclone.errors import APIError
from openclone.gateway.stored_completions_wire import for_engine
from openclone.routing.router import Router
from openclone.routing.splits import takes
from openclone.schema import ChatCompletionRequest, CompletionRequest
from openclone.store.db import Store
from openclone.store.exchange import Exchange
from openclone.store.scrub import RedactorLike, resolve_redactor
from openclone.store.splits import SplitInfo, write_pair

__all__ = ["Arm", "ShadowDispatcher", "canary_arm", "count_arm"]

log = logging.getLogger("openclone.gateway")
_NO_CONSENT_TTL = 30.0


@dataclass(frozen=True)
class Arm:
    """The side of a canary split that answers one request."""

    split: SplitInfo
    name: str  # canary | incumbent

    @property
    def model(self) -> str:
        """The name to route: the candidate version, or the alias itself."""
        return self.split.candidate if self.name == "canary" else self.split.name


def canary_arm(
    router: Router, request: Request, req: ChatCompletionRequest | CompletionRequest
) -> Arm | None:
    """None unless ``req`` names an alias with an active canary (one dict lookup)."""
    split = router.splits.canaries.get(req.model)
    if split is None:
        return None
    caller = getattr(request.state, "caller", None)
    key = (
        request.headers.get("x-openclone-conversation") or getattr(caller, "user", None) or req.user
    )
    sticky = f"{getattr(caller, 'tenant', '')}/{key}" if key else None
    return Arm(split, "canary" if takes(split, sticky) else "incumbent")


def count_arm(router: Router, arm: Arm | None, status: int, started: float) -> None:
    """Count an answered (200) or failed (5xx) request of a canary split's arm."""
    if arm is None or (status != 200 and status < 500):
        return
    router.splits.count(
        arm.split.id, arm.name, error=status >= 500, seconds=time.perf_counter() - started
    )


class ShadowDispatcher:
    """Fires shadow requests for one gateway. ``counts``: ``sent``, ``stored``, ``busy``,
    ``full``, ``no_consent``, ``errors`` (the candidate failed; the pair is kept with its
    error) and ``failed`` (the pair could not be stored)."""

    def __init__(
        self,
        router: Router,
        store: Store,
        redactor: RedactorLike | str | None = None,
        *,
        concurrency: int = 2,
        timeout: float = 120.0,
    ) -> None:
        self.router, self.store = router, store
        self.redactor = resolve_redactor(redactor)  # a bad setting fails at startup
        self.concurrency, self.timeout = concurrency, timeout
        self.in_flight = 0
        self.counts: Counter[str] = Counter()
        self._pending: dict[str, int] = {}  # split id -> shadow requests in flight
        self._full: set[str] = set()  # splits whose budget the store reported spent
        self._no_consent: dict[tuple[str | None, str | None, bool | None], float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def split_for(self, name: str, endpoint: str, arm: Arm | None) -> SplitInfo | None:
        """The split whose pairs a chat request for ``name`` may join: its canary's, when
        the canary answers it and keeps pairs, else the name's shadow (if any)."""
        if endpoint != "chat":
            return None
        if arm is not None and arm.name == "canary":
            return arm.split if arm.split.budget else None
        return self.router.splits.shadows.get(name)

    def offer(
        self, split: SplitInfo, req: ChatCompletionRequest | CompletionRequest, live: Exchange
    ) -> bool:
        """Shadow this answered chat request, or not; returns at once either way."""
        if not isinstance(req, ChatCompletionRequest) or live.status != 200:
            return False
        if live.train is False or split.id in self._full:
            return False
        # A canary's share was drawn already, when its arm was chosen: each of its requests
        # is offered until the budget is spent.
        if split.kind == "shadow" and random.random() >= split.share:
            return False
        pending = self._pending.get(split.id, 0)
        if split.pairs + pending >= (split.budget or 0):
            return False
        who = (live.tenant, live.user, live.train)
        until = self._no_consent.get(who)
        if until is not None:
            if until > time.monotonic():
                return False
            del self._no_consent[who]
        if self.in_flight >= self.concurrency:
            self.counts["busy"] += 1
            return False
        self.in_flight += 1
        self._pending[split.id] = pending + 1
        self.counts["sent"] += 1
        task = asyncio.create_task(self._shadow(split, req, live), name="shadow")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _shadow(self, split: SplitInfo, req: ChatCompletionRequest, live: Exchange) -> None:
        try:
            # A canary's second answer is the incumbent's (the alias), a shadow's the candidate's.
            shown, target = self.router.pin(
                split.name if split.kind == "canary" else split.candidate
            )
            ask = for_engine(req).model_copy(
                update={"model": target, "stream": False, "stream_options": None}
            )
            started = time.perf_counter()
            answer, error = None, None
            try:
                result, _ = await asyncio.wait_for(
                    self.router.call(target, lambda e: e.chat(ask)), self.timeout
                )
                result.model = shown
                answer = result.model_dump(exclude_none=True)
            except (APIError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}"[:2000]
                self.counts["errors"] += 1
            took = (time.perf_counter() - started) * 1000
            outcome = await asyncio.to_thread(
                write_pair, self.store, split.id, live, shadow_model=shown,
                shadow_response=answer, shadow_error=error, shadow_latency_ms=took,
                redactor=self.redactor,
            )  # fmt: skip
            self.counts[outcome] += 1
            if outcome == "full":
                self._full.add(split.id)
            elif outcome == "no_consent":
                if len(self._no_consent) > 10_000:  # many people without consent: start over
                    self._no_consent.clear()
                who = (live.tenant, live.user, live.train)
                self._no_consent[who] = time.monotonic() + _NO_CONSENT_TTL
        except Exception:  # a shadow must never disturb the gateway
            self.counts["failed"] += 1
            log.exception("shadow request for %s failed", split.name)
        finally:
            self.in_flight -= 1
            left = self._pending.get(split.id, 1) - 1
            if left > 0:
                self._pending[split.id] = left
            else:
                self._pending.pop(split.id, None)

    async def close(self) -> None:
        """Cancel the shadow requests still running (their pairs are not written)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
