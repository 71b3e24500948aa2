"""Serving ``POST /v1/embeddings``: route to a replica that embeds, encode as asked.

Engines answer float vectors; base64 (little-endian float32, as OpenAI sends it) is made
here once for every engine. Embeddings are not captured: capture keeps exchanges to learn
answers from, and an embedding has none.
"""

from __future__ import annotations

import base64
import sys
import time
from array import array

from fastapi import Response

from openclone.engines.base import Embedder, Engine
from openclone.errors import APIError, InvalidRequestError
from openclone.gateway import limits
from openclone.gateway.state import Gateway
from openclone.schema import EmbeddingList, EmbeddingRequest
from openclone.store.accounts import Principal

__all__ = ["embed"]

_ENDPOINT = "embeddings"


async def embed(
    gw: Gateway,
    req: EmbeddingRequest,
    who: Principal | None = None,
    response: Response | None = None,
) -> EmbeddingList:
    """Embed ``req`` for ``who`` (held to its rate limits); the x-ratelimit headers that
    apply go on ``response``."""
    t0 = time.perf_counter()
    limits.check_request(req, gw.settings)  # the model name's cap, lone surrogates
    shown, target = gw.router.pin(req.model)
    ticket = gw.limiter.admit(who, req)
    engine_req = req.model_copy(update={"model": target}) if target != req.model else req

    async def call(engine: Engine) -> EmbeddingList:
        if not (isinstance(engine, Embedder) and engine.capabilities.embeddings):
            raise InvalidRequestError(
                f"model '{shown}' does not support embeddings", param="model",
                code="model_does_not_support_embeddings",
            )  # fmt: skip
        return await engine.embed(engine_req)

    m = gw.metrics
    label = m.model_label(target)
    try:
        result, _ = await gw.router.call(target, call)
    except BaseException as exc:
        if ticket is not None:
            ticket.settle(0)
        if isinstance(exc, APIError):
            m.requests.labels(_ENDPOINT, label, str(exc.status_code)).inc()
        raise
    if ticket is not None:
        ticket.settle(result.usage.total_tokens)
        if response is not None:
            response.headers.update(ticket.headers)
    m.requests.labels(_ENDPOINT, label, "200").inc()
    m.latency.labels(_ENDPOINT, label).observe(time.perf_counter() - t0)
    m.tokens.labels(label, "prompt").inc(result.usage.prompt_tokens)
    result.model = shown
    if req.encoding_format == "base64":
        for item in result.data:
            if isinstance(item.embedding, list):
                item.embedding = _base64(item.embedding)
    return result


def _base64(vector: list[float]) -> str:
    floats = array("f", vector)
    if sys.byteorder != "little":
        floats.byteswap()
    return base64.b64encode(floats.tobytes()).decode("ascii")
