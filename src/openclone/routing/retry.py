"""One model call, tried again while the failure is transient: the one retry loop that
OpenClone's own tools (distill's teacher, evaluation, the judge, drift watch) share.

Transient means the server may answer next time: ``RateLimited`` (429, a full queue),
``ReplicaUnavailable`` and any ``EngineError`` marked retryable (5xx, a dropped connection,
a restarting worker), and a try that ran past its ``timeout``. Retries wait with
exponential backoff and jitter, so many callers that failed together do not return
together. Anything else is the answer and is raised at once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass

from openclone.errors import EngineError, RateLimited, ReplicaUnavailable
from openclone.routing.client import ChatClient
from openclone.schema import ChatCompletion, ChatCompletionRequest

__all__ = ["Attempts", "RetriesExhausted", "chat_with_retries", "is_transient"]


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, RateLimited | ReplicaUnavailable | TimeoutError):
        return True
    return isinstance(exc, EngineError) and exc.retryable


@dataclass(frozen=True)
class Attempts:
    """How hard one call is tried."""

    tries: int = 5  # the first included
    backoff: float = 1.0  # seconds before the first retry; doubled each retry
    backoff_max: float = 30.0
    timeout: float | None = None  # seconds one try may take

    def delay(self, retry: int, rng: random.Random) -> float:
        """Seconds before retry number ``retry`` (1-based): up to the doubled backoff,
        at least half of it."""
        ceiling = min(self.backoff_max, self.backoff * 2 ** (retry - 1))
        return rng.uniform(ceiling / 2, ceiling)


class RetriesExhausted(Exception):
    """Every try failed transiently; ``last`` is the last failure."""

    def __init__(self, tries: int, last: BaseException) -> None:
        super().__init__(f"failed {tries} time(s): {last}")
        self.tries = tries
        self.last = last


async def chat_with_retries(
    client: ChatClient,
    req: ChatCompletionRequest,
    attempts: Attempts,
    *,
    slot: Callable[[], AbstractAsyncContextManager[object]] | None = None,
    on_retry: Callable[[BaseException], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
) -> ChatCompletion:
    """``client.chat(req)``, tried up to ``attempts.tries`` times while it fails transiently.

    ``slot`` is held around each try (not around the waits between them), e.g. a
    concurrency limit; ``on_retry`` hears each transient failure that is retried.
    A non-transient error is raised as it is; :class:`RetriesExhausted` when tries run out.
    """
    rng = rng or random.Random()
    last: BaseException | None = None
    for attempt in range(1, attempts.tries + 1):
        async with slot() if slot is not None else nullcontext():
            try:
                call = client.chat(req)
                if attempts.timeout is None:
                    return await call
                return await asyncio.wait_for(call, attempts.timeout)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                last = exc
        if attempt < attempts.tries:
            if on_retry is not None:
                on_retry(last)
            await sleep(attempts.delay(attempt, rng))
    assert last is not None  # tries >= 1, and every pass that did not return set it
    raise RetriesExhausted(attempts.tries, last)
