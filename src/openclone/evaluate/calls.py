"""One model call as the evaluation tools make it: timed, priced, retried when transient.

The retrying is :func:`openclone.routing.retry.chat_with_retries`, shared with distill's
teacher; when the tries run out the last error is raised as it was. An unknown model is
re-raised with the models the client can reach, since that is usually a typo.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from openclone.config import Price
from openclone.errors import ModelNotFound
from openclone.evaluate.results import Answer
from openclone.routing.retry import Attempts, RetriesExhausted, chat_with_retries, is_transient
from openclone.schema import ChatCompletionRequest, ChatMessage, ResponseFormat

if TYPE_CHECKING:
    from openclone.routing.client import ChatClient

__all__ = ["FATAL", "ask", "is_transient"]

# Errors that no other prompt would escape either: stop the whole run.
FATAL: tuple[type[Exception], ...] = (ModelNotFound,)
_MAX_SLEEP = 30.0


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
    starts: list[float] = []

    @contextlib.asynccontextmanager
    async def timed() -> AsyncIterator[None]:
        starts.append(time.perf_counter())  # the answer's latency is its own try's
        yield

    attempts = Attempts(tries=retries + 1, backoff=backoff, backoff_max=_MAX_SLEEP)
    try:
        resp = await chat_with_retries(client, req, attempts, slot=timed)
    except ModelNotFound as exc:
        raise _unknown(client, model, exc) from exc
    except RetriesExhausted as exc:
        raise exc.last from None
    latency = time.perf_counter() - starts[-1]
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


def _unknown(client: ChatClient, model: str, exc: ModelNotFound) -> ModelNotFound:
    known = client.models()
    if not known:
        return exc
    return ModelNotFound(
        f"unknown model {model!r}; available models: {', '.join(sorted(known))}", param="model"
    )
