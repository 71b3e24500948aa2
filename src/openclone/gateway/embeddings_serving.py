"""Serving ``POST /v1/embeddings``: route to a replica that embeds, encode as asked.

Engines answer float vectors; base64 (little-endian float32, as OpenAI sends it) is made
here once for every engine. Each request is captured like a chat exchange — tenant, person,
consent, redaction and encryption at rest, erasure and retention are the capture store's —
under endpoint ``embeddings``: the input texts, and of the answer only a description
(model, count, dimensions, usage), never the vectors, which are the model's and can be
made again. Training reads only ``chat`` captures, so these never become training rows.
"""

from __future__ import annotations

import base64
import sys
import time
from array import array

from fastapi import Request, Response

from openclone.engines.base import Embedder, Engine
from openclone.errors import APIError, InvalidRequestError
from openclone.gateway import limits
from openclone.gateway.capture import exchange_for, new_capture_id, submit_safely
from openclone.gateway.state import Gateway
from openclone.routing.router import Replica
from openclone.schema import EmbeddingList, EmbeddingRequest, Usage
from openclone.store.accounts import Principal

__all__ = ["embed"]

_ENDPOINT = "embeddings"


async def embed(
    gw: Gateway,
    req: EmbeddingRequest,
    who: Principal | None = None,
    response: Response | None = None,
    request: Request | None = None,
) -> EmbeddingList:
    """Embed ``req`` for ``who`` (held to its rate limits); the x-ratelimit headers that
    apply, and the capture's id, go on ``response``. ``request`` carries the consent header
    (a batch line has none)."""
    t0 = time.perf_counter()
    limits.check_request(req, gw.settings)  # the model name's cap, lone surrogates
    shown, target = gw.router.pin(req.model)
    await gw.models.check(gw.store, who, req.model, shown, target)  # another tenant's fine-tune
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
        result, replica = await gw.router.call(target, call)
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
    if gw.capture is not None:
        capture_id = _capture(gw, req, who, request, result, replica, time.perf_counter() - t0)
        if response is not None:
            response.headers["X-OpenClone-Capture-Id"] = capture_id
    if req.encoding_format == "base64":
        for item in result.data:
            if isinstance(item.embedding, list):
                item.embedding = _base64(item.embedding)
    return result


def _capture(
    gw: Gateway,
    req: EmbeddingRequest,
    who: Principal | None,
    request: Request | None,
    result: EmbeddingList,
    replica: Replica,
    elapsed: float,
) -> str:
    ex = exchange_for(
        request.headers if request is not None else {}, who, capture_id=new_capture_id(),
        endpoint=_ENDPOINT, model=result.model, stream=False, body_user=req.user,
        conversation=False,  # an embedding is no turn of a conversation
        request=req.model_dump(exclude_none=True),
    )  # fmt: skip
    first = result.data[0].embedding if result.data else []
    ex.response = {
        "object": "list", "model": result.model, "count": len(result.data),
        "dimensions": len(first) if isinstance(first, list) else None,
        "usage": result.usage.model_dump(),
    }  # fmt: skip
    ex.status, ex.latency_ms, ex.replica = 200, elapsed * 1000, replica.id
    ex.usage = Usage.of(result.usage.prompt_tokens, 0)
    submit_safely(gw.capture, ex)
    return ex.id


def _base64(vector: list[float]) -> str:
    floats = array("f", vector)
    if sys.byteorder != "little":
        floats.byteswap()
    return base64.b64encode(floats.tobytes()).decode("ascii")
