"""One model call as the evaluation tools make it: timed, priced, retried when transient.

Transient means the server may answer next time: ``RateLimited`` (429, a full queue) and an
``EngineError`` marked retryable (5xx, a dropped connection, no replica up right now). Those
are retried with exponential backoff and jitter; anything else is the answer. An unknown
model is re-raised with the models the client can reach, since that is usually a typo.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from openclone.config import Price
from openclone.errors import EngineError, ModelNotFound, RateLimited, ReplicaUnavailable
from openclone.evaluate.results import Answer
from openclone.schema import ChatCompletionRequest, ChatMessage, ResponseFormat

if TYPE_CHECKING:
    from openclone.routing.client import ChatClient

__all__ = ["FATAL", "ask", "is_transient"]

# Errors that no other prompt would escape either: stop the whole run.
FATAL: tuple[type[Exception], ...] = (ModelNotFound,)
_MAX_SLEEP = 30.0


def is_transient(exc: Exception) -> bool:
    if isinstance(exc, RateLimited | ReplicaUnavailable):
        return True
    return isinstance(exc, EngineError) and exc.retryable


async def ask(
    client: ChatClient,
    model: str,
    messages: Sequence[ChatMessage],
    *,
    max_tokens: int,
    temperature: float = 0.0,
    seed: int | None = 0,
    price: Price | None = None,
    retries: int = 4,
    backoff: float = 1.0,
    response_format: ResponseFormat | None = None,
) -> Answer:
    """``model``'s answer to ``messages``; raises the last error once retries run out."""
    req = ChatCompletionRequest(
        model=model,
        messages=list(messages),
        temperature=temperature,
        max_tokens=max_tokens,
        seed=seed,
        response_format=response_format,
    )
    for attempt in range(retries + 1):
        start = time.perf_counter()
        try:
            resp = await client.chat(req)
        except ModelNotFound as exc:
            raise _unknown(client, model, exc) from exc
        except (RateLimited, EngineError) as exc:
            if attempt == retries or not is_transient(exc):
                raise
            delay = min(_MAX_SLEEP, backoff * 2**attempt)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # jitter: no retry storms
            continue
        latency = time.perf_counter() - start
        choice = resp.choices[0] if resp.choices else None
        text = (choice.message.content or "") if choice else ""
        usage = resp.usage
        prompt_tokens = usage.prompt_tokens if usage else 0
        completion_tokens = usage.completion_tokens if usage else 0
        return Answer(
            text=text,
            latency_s=latency,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost=(price or Price()).cost(prompt_tokens, completion_tokens),
            finish_reason=choice.finish_reason if choice else None,
        )
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def _unknown(client: ChatClient, model: str, exc: ModelNotFound) -> ModelNotFound:
    known = client.models()
    if not known:
        return exc
    return ModelNotFound(
        f"unknown model {model!r}; available models: {', '.join(sorted(known))}", param="model"
    )
