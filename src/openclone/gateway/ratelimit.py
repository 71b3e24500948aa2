"""Per-tenant and per-key rate limits and quotas, enforced without the database.

Admission reads counters this process holds: what every gateway had counted by the last
sync (``remote``) plus what this one counted since (``unsynced``). About once a second
(``rate_limit_sync``) a task adds the unsynced counts to the shared rows with an atomic
``UPDATE ... SET n = n + delta`` and reads back the totals and the current limits
(:func:`openclone.store.ratelimits.sync_usage`). A request so pays a few dict lookups, and
a caller whose tenant and key have no limits pays one.

The trade-off, in numbers: the windows are fixed UTC minutes (and months), so a client may
spend a minute's allowance at the end of one minute and again at the start of the next;
and N gateways each admit against counts up to one sync old, so together they can let
through up to about N times what arrives in one sync interval beyond a limit before they
all see it. Concurrent streams are counted exactly, but per gateway process. Token counts
are estimated at admission (prompt characters / 4, plus ``max_tokens`` times the choices)
and settled with the engine's usage when the answer ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from openclone.errors import RateLimitExceeded
from openclone.schema import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from openclone.store import Store
from openclone.store.accounts import Principal
from openclone.store.ratelimits import (
    Subject,
    Usage,
    Window,
    minute_of,
    month_of,
    month_start,
    sync_usage,
)

__all__ = ["Limiter", "Ticket", "estimate"]

log = logging.getLogger("openclone.gateway")
_CHARS_PER_TOKEN = 4  # OpenAI's own rule of thumb for English text


def estimate(req: BaseModel) -> tuple[int, int]:
    """(prompt tokens, the most completion tokens) a request may use, from its text."""
    if isinstance(req, ChatCompletionRequest):
        chars = sum(len(m.text()) for m in req.messages)
        return _tokens(chars), (req.token_limit or 0) * req.n
    if isinstance(req, CompletionRequest):
        prompts = req.prompts()
        return _tokens(sum(map(len, prompts))), (req.token_limit or 0) * req.n * len(prompts)
    if isinstance(req, EmbeddingRequest):
        value = req.input
        if isinstance(value, str):
            return _tokens(len(value)), 0
        count = sum(len(v) if isinstance(v, str | list) else 1 for v in value)
        return (count if value and not isinstance(value[0], str) else _tokens(count)), 0
    return 0, 0


def _tokens(chars: int) -> int:
    return -(-chars // _CHARS_PER_TOKEN)


@dataclass
class Ticket:
    """One admitted request: its charges, to settle with what it really used."""

    limiter: Limiter
    windows: list[tuple[Window, str]]  # the rows charged, with their tenant id
    estimate: int
    streams: list[str]  # subjects whose stream slot this request holds
    headers: dict[str, str] = field(default_factory=dict)
    settled: bool = False

    def settle(self, used: int | None) -> None:
        """Replace the estimate with ``used`` tokens (``None``: keep the estimate, the answer
        went out but its usage is unknown) and free the stream slot. Only the first call counts."""
        if self.settled:
            return
        self.settled = True
        delta = 0 if used is None else used - self.estimate
        if delta:
            for window, tenant_id in self.windows:
                self.limiter.add(window, tenant_id, 0, delta)
        for subject in self.streams:
            self.limiter.streams[subject] -= 1

    def guard(self, owner: object) -> None:
        """Settle when ``owner`` (a response stream) is dropped without finishing, e.g. a
        client gone before the body started: its slot must not leak."""
        # The cyclic GC may collect ``owner`` on any thread; the counters are the loop's.
        weakref.finalize(owner, _on_loop, asyncio.get_running_loop(), self.settle)


def _on_loop(loop: asyncio.AbstractEventLoop, settle: Callable[[int | None], object]) -> None:
    if not loop.is_closed():  # at shutdown there is nothing left to release
        loop.call_soon_threadsafe(settle, None)


class Limiter:
    """The counters and limits one gateway holds. Used on the event loop only."""

    def __init__(self) -> None:
        self.tenants: dict[str, Subject] = {}  # by tenant name
        self.keys: dict[str, Subject] = {}  # by key id
        self.streams: dict[str, int] = {}  # open streams by subject
        self.remote: dict[Window, Usage] = {}  # every gateway's totals at the last sync
        self.unsynced: dict[Window, list[int]] = {}  # [requests, tokens] not yet sent
        self._tenant_of: dict[Window, str] = {}
        self._minute = 0

    def admit(self, who: Principal | None, req: BaseModel, stream: bool = False) -> Ticket | None:
        """Charge one request, or raise :class:`RateLimitExceeded`; None when no limit binds
        the caller (nothing to settle)."""
        if who is None or not (self.tenants or self.keys):
            return None
        subjects = [s for s in (self.tenants.get(who.tenant),
                                self.keys.get(who.key_id or "")) if s is not None]  # fmt: skip
        if not subjects:
            return None
        prompt, completion = estimate(req)
        cost = prompt + completion
        now = time.time()
        minute, month = minute_of(now), month_of(now)
        reset = 60 - now % 60
        headers: dict[str, str] = {}
        for s in subjects:  # every check before any charge: a refusal costs nothing
            self._check(s, minute, month, cost, reset, stream, headers)
        windows: list[tuple[Window, str]] = []
        for s in subjects:
            for window in ((s.id, "m", minute), (s.id, "M", month)):
                self.add(window, s.tenant_id, 1, cost)
                windows.append((window, s.tenant_id))
        held = [s.id for s in subjects if stream and s.limits.max_streams is not None]
        for subject in held:
            self.streams[subject] = self.streams.get(subject, 0) + 1
        # The headers after this request's charge: what the client has left.
        for key in [k for k in headers if k.startswith("x-ratelimit-remaining")]:
            kind = 1 if key.endswith("requests") else cost
            headers[key] = str(max(0, int(headers[key]) - kind))
        return Ticket(self, windows, cost, held, headers)

    def used(self, window: Window) -> tuple[int, int]:
        r, t = self.remote.get(window, (0, 0))
        local = self.unsynced.get(window)
        return (r + local[0], t + local[1]) if local is not None else (r, t)

    def add(self, window: Window, tenant_id: str, requests: int, tokens: int) -> None:
        counts = self.unsynced.get(window)
        if counts is None:
            self.unsynced[window] = [requests, tokens]
            self._tenant_of[window] = tenant_id
        else:
            counts[0] += requests
            counts[1] += tokens

    def _check(
        self,
        s: Subject,
        minute: int,
        month: int,
        cost: int,
        reset: float,
        stream: bool,
        headers: dict[str, str],
    ) -> None:
        lim = s.limits
        requests, tokens = self.used((s.id, "m", minute))
        wait = max(1, math.ceil(reset))
        if lim.rpm is not None:
            _tighter(headers, "requests", lim.rpm, lim.rpm - requests, wait)
        if lim.tpm is not None:
            _tighter(headers, "tokens", lim.tpm, lim.tpm - tokens, wait)
        if lim.rpm is not None and requests + 1 > lim.rpm:
            raise _refuse(
                f"Rate limit reached for requests per min (RPM) of {s.label}: Limit {lim.rpm}, "
                f"Used {requests}, Requested 1. Please try again in {wait}s.",
                "requests", wait, headers,
            )  # fmt: skip
        if lim.tpm is not None and tokens + cost > lim.tpm:
            if cost > lim.tpm:
                raise _refuse(
                    f"Request too large for tokens per min (TPM) of {s.label}: Limit "
                    f"{lim.tpm}, Requested {cost} (the prompt's estimate plus max_tokens). "
                    "Lower max_tokens or shorten the prompt.",
                    "tokens", wait, headers, param="max_tokens",
                )  # fmt: skip
            raise _refuse(
                f"Rate limit reached for tokens per min (TPM) of {s.label}: Limit {lim.tpm}, "
                f"Used {tokens}, Requested {cost}. Please try again in {wait}s.",
                "tokens", wait, headers,
            )  # fmt: skip
        if lim.monthly_tokens is not None:
            spent = self.used((s.id, "M", month))[1]
            if spent + cost > lim.monthly_tokens:
                resets = month_start(month + 1)
                when = dt.datetime.fromtimestamp(resets, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
                left = max(0, lim.monthly_tokens - spent)
                raise _refuse(
                    f"The monthly token quota of {s.label} is used up: Limit "
                    f"{lim.monthly_tokens}, Used {spent}, Requested {cost}, Remaining {left}. "
                    f"It resets on {when}; ask an admin to raise it sooner.",
                    "insufficient_quota", math.ceil(resets - time.time()), headers,
                    code="insufficient_quota",
                )  # fmt: skip
        if stream and lim.max_streams is not None:
            open_now = self.streams.get(s.id, 0)
            if open_now >= lim.max_streams:
                raise _refuse(
                    f"Too many concurrent streams for {s.label}: Limit {lim.max_streams}, "
                    f"Open {open_now}. Try again when one of them has finished.",
                    "requests", 1, headers,
                )  # fmt: skip

    def take(self) -> dict[Window, tuple[int, int, str]]:
        """What to send at the next sync (it stays counted here until that succeeds)."""
        return {w: (c[0], c[1], self._tenant_of[w]) for w, c in self.unsynced.items() if any(c)}

    def synced(
        self,
        sent: dict[Window, tuple[int, int, str]],
        tenants: dict[str, Subject],
        keys: dict[str, Subject],
        totals: dict[Window, Usage],
    ) -> None:
        """The database has ``sent`` now, and ``totals`` include it: stop counting it twice."""
        for window, (requests, tokens, _) in sent.items():
            counts = self.unsynced[window]
            counts[0] -= requests
            counts[1] -= tokens
            if not any(counts):
                del self.unsynced[window]
                del self._tenant_of[window]
        self.tenants, self.keys, self.remote = tenants, keys, totals

    async def sync(self, store: Store) -> None:
        """One exchange with the shared counters; a failed one is retried next time."""
        sent = self.take()
        now = time.time()
        minute = minute_of(now)
        prune, self._minute = minute != self._minute, minute
        try:
            tenants, keys, totals = await asyncio.to_thread(
                sync_usage, store, sent, minute, month_of(now), prune=prune
            )
        except SQLAlchemyError:
            # The database is away: admission goes on with this gateway's own counts.
            log.warning("could not sync rate-limit usage; retrying", exc_info=True)
            return
        self.synced(sent, tenants, keys, totals)

    async def run(self, store: Store, interval: float, stop: asyncio.Event) -> None:
        """Sync every ``interval`` seconds until ``stop`` is set, then once more, so a clean
        shutdown loses no count (a cancel could lose a sync already sent)."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            try:
                await self.sync(store)
            except Exception:  # the loop must outlive any one failure
                log.exception("rate-limit sync failed")

    def usage(self, tenant: str) -> dict[str, int]:
        """What this gateway counts for ``tenant`` now: this minute and this month."""
        s = self.tenants.get(tenant)
        if s is None:
            return {}
        now = time.time()
        requests, tokens = self.used((s.id, "m", minute_of(now)))
        month = self.used((s.id, "M", month_of(now)))[1]
        return {"requests_this_minute": requests, "tokens_this_minute": tokens,
                "tokens_this_month": month, "open_streams": self.streams.get(s.id, 0)}  # fmt: skip


def _tighter(headers: dict[str, str], kind: str, limit: int, left: int, wait: int) -> None:
    """Keep, of a tenant's and a key's limits, the one with the least left."""
    remaining = f"x-ratelimit-remaining-{kind}"
    if remaining in headers and int(headers[remaining]) <= left:
        return
    headers[f"x-ratelimit-limit-{kind}"] = str(limit)
    headers[remaining] = str(max(0, left))
    headers[f"x-ratelimit-reset-{kind}"] = f"{wait}s"


def _refuse(
    message: str,
    kind: str,
    wait: int,
    headers: dict[str, str],
    *,
    param: str | None = None,
    code: str | None = None,
) -> RateLimitExceeded:
    return RateLimitExceeded(
        message,
        error_type=kind,
        headers={**headers, "Retry-After": str(max(1, wait))},
        param=param,
        code=code,
    )
