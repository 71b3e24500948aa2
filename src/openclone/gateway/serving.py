"""Serving logic behind the OpenAI endpoints: routing, SSE framing, usage, disconnects."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from typing import TypeVar

from fastapi import Request
from fastapi.responses import Response

from openclone.errors import APIError, EngineError, UnsupportedParameter
from openclone.gateway import limits
from openclone.gateway.body_limit import SURROGATE_FLAG
from openclone.gateway.capture import (
    StreamAssembler,
    can_keep,
    exchange_for,
    new_capture_id,
    record,
    submit_safely,
)
from openclone.gateway.ratelimit import Ticket
from openclone.gateway.splits import Arm, canary_arm, count_arm
from openclone.gateway.sse import Closing, EventStream
from openclone.gateway.state import Gateway
from openclone.gateway.stored_completions_wire import for_engine, keep_options
from openclone.routing.router import Replica
from openclone.schema import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    StreamOptions,
    Usage,
)
from openclone.store.accounts import Principal
from openclone.store.exchange import Exchange
from openclone.store.splits import SplitInfo

log = logging.getLogger("openclone.gateway")
T = TypeVar("T")

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_DONE = Closing(b"data: [DONE]\n\n")


class ClientGone(Exception):
    """The client disconnected before a non-streaming answer was ready."""


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``, cancelling it (and so freeing the engine slot) if the client leaves."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise ClientGone
    return task.result()


def _exchange(
    gw: Gateway,
    request: Request,
    req: ChatCompletionRequest | CompletionRequest,
    endpoint: str,
    capture_id: str,
    keep: dict[str, str] | None = None,
) -> Exchange:
    return exchange_for(
        request.headers, getattr(request.state, "caller", None), capture_id=capture_id,
        endpoint=endpoint, model=req.model, stream=req.stream, body_user=req.user, keep=keep,
        request=req.model_dump(exclude_none=True, by_alias=True),
    )  # fmt: skip


def _answer(
    gw: Gateway, req: ChatCompletionRequest | CompletionRequest, crashes: int
) -> Awaitable[tuple[ChatCompletion | Completion, Replica]]:
    if isinstance(req, ChatCompletionRequest):
        chat_req = for_engine(req)
        return gw.router.call(req.model, lambda e: e.chat(chat_req), crashes)
    return gw.router.call(req.model, lambda e: e.complete(req), crashes)


async def _open_stream(
    gw: Gateway, req: ChatCompletionRequest | CompletionRequest, crashes: int
) -> tuple[AsyncGenerator[ChatCompletionChunk | Completion, None], Replica]:
    if isinstance(req, ChatCompletionRequest):
        chat_req = for_engine(req)
        return await gw.router.stream(req.model, lambda e: e.stream(chat_req), crashes)
    return await gw.router.stream(req.model, lambda e: e.stream_complete(req), crashes)


def _falls_back(arm: Arm | None, exc: APIError) -> bool:
    """A canary that failed before answering (a 5xx) hands the request to the incumbent:
    the caller never sees the candidate's failure, which still counts for its rollback. Not
    a request that crashed engines twice: the incumbent's would be next."""
    if arm is None or arm.name != "canary" or exc.status_code < 500:
        return False
    return exc.code != "engine_crashed"


def _crashes(exc: APIError) -> int:
    """Engine deaths a failed request saw: its fallback goes on counting them."""
    return exc.crashes if isinstance(exc, EngineError) else 0


async def _after_failure(
    gw: Gateway,
    exc: APIError,
    arm: Arm | None,
    ticket: Ticket | None,
    t0: float,
    endpoint: str,
    who: Principal | None,
    requested: str,
    req: ChatCompletionRequest | CompletionRequest,
    headers: dict[str, str],
) -> tuple[str, ChatCompletionRequest | CompletionRequest, int]:
    """A request whose engine call failed before answering: counted, then raised again
    (its ticket settled), unless a canary hands it to the incumbent: then (the version
    shown, the request for the alias's own version, the engine deaths it saw so far), and
    ``headers`` name that version."""
    count_arm(gw.router, arm, exc.status_code, t0)
    gw.metrics.requests.labels(
        endpoint, gw.metrics.model_label(req.model), str(exc.status_code)
    ).inc()
    try:
        if not _falls_back(arm, exc):
            raise exc
        shown, target = gw.router.pin(requested)
        await gw.models.check(gw.store, who, requested, shown, target)
    except BaseException:
        _settle(ticket, 0)  # nothing was generated for the client (a stream's slot back)
        raise
    if shown != requested:
        headers["X-OpenClone-Model-Version"] = shown
    return shown, req.model_copy(update={"model": target}), _crashes(exc)


async def serve(
    gw: Gateway, request: Request, req: ChatCompletionRequest | CompletionRequest
) -> Response:
    endpoint = "chat" if isinstance(req, ChatCompletionRequest) else "completions"
    t0 = time.perf_counter()
    limits.check_request(req, gw.settings, scan_text=getattr(request.state, SURROGATE_FLAG, True))
    keep = keep_options(req) if isinstance(req, ChatCompletionRequest) else None
    if keep is not None and not can_keep(gw.capture):
        raise UnsupportedParameter(
            "This server keeps no captures (capture is off), so it cannot store completions.",
            param="store",
        )
    who = getattr(request.state, "caller", None)
    req.scope_cache(getattr(who, "tenant", None))
    requested, arm = req.model, canary_arm(gw.router, request, req)  # arm: a canary's side
    shown, target = gw.router.pin(arm.model if arm is not None else req.model)
    await gw.models.check(gw.store, who, requested, shown, target)  # another tenant's fine-tune
    if target != req.model:
        # The engine sees the model that serves the version; the client and the capture
        # see the pinned version (as OpenAI answers "gpt-4o" with a dated snapshot).
        req = req.model_copy(update={"model": target})
    m = gw.metrics
    capture_id = new_capture_id()
    # The id lets a client attach feedback to what was captured.
    headers = {"X-OpenClone-Capture-Id": capture_id} if gw.capture is not None else {}
    if shown != requested:  # an alias: the version that answers (a canary's, too)
        headers["X-OpenClone-Model-Version"] = shown
    # After every 400 (a refused request is not charged), before any engine work.
    ticket = gw.limiter.admit(who, req, stream=req.stream)
    if ticket is not None:
        headers.update(ticket.headers)
    crashes = 0
    if not req.stream:
        while True:
            try:
                result, replica = await _unless_disconnected(request, _answer(gw, req, crashes))
            except ClientGone:
                _settle(ticket, None)  # the engine worked until the client left: keep the estimate
                m.disconnects.labels(m.model_label(req.model)).inc()
                return Response(status_code=499)
            except APIError as exc:
                shown, req, crashes = await _after_failure(
                    gw, exc, arm, ticket, t0, endpoint, who, requested, req, headers
                )
                arm = None  # the incumbent answers it
                continue
            except BaseException:
                _settle(ticket, 0)
                raise
            break
        _settle(ticket, result.usage.total_tokens if result.usage is not None else None)
        count_arm(gw.router, arm, 200, t0)
        elapsed = time.perf_counter() - t0
        label = m.model_label(req.model)
        m.requests.labels(endpoint, label, "200").inc()
        m.latency.labels(endpoint, label).observe(elapsed)
        if result.usage is not None:
            _count_usage(gw, label, result.usage)
        result.model = shown
        body = result.model_dump_json()
        shadow = gw.shadow.split_for(requested, endpoint, arm) if gw.shadow else None
        if gw.capture is not None or shadow is not None:
            ex = _exchange(gw, request, req, endpoint, capture_id, keep)
            ex.model = shown
            ex.response, ex.status, ex.latency_ms = (
                result.model_dump(exclude_none=True),
                200,
                elapsed * 1000,
            )
            ex.replica, ex.usage = replica.id, result.usage
            await record(gw.capture, ex)  # one to keep is committed before the answer goes
            if shadow is not None and gw.shadow is not None:
                gw.shadow.offer(shadow, req, ex)  # in the background, after the answer
        return Response(body, media_type="application/json", headers=headers)

    # Ask the engine for usage always (for metrics and capture); hand it on only if asked.
    wants_usage = req.include_usage
    engine_req = (
        req
        if wants_usage
        else req.model_copy(update={"stream_options": StreamOptions(include_usage=True)})
    )
    it: AsyncGenerator[ChatCompletionChunk | Completion, None]
    while True:
        try:
            it, replica = await _open_stream(gw, engine_req, crashes)
        except APIError as exc:
            shown, req, crashes = await _after_failure(
                gw, exc, arm, ticket, t0, endpoint, who, requested, req, headers
            )
            arm = None  # the incumbent answers it
            engine_req = engine_req.model_copy(update={"model": req.model})
            continue
        except BaseException:
            _settle(ticket, 0)
            raise
        break
    exchange = None
    shadow = gw.shadow.split_for(requested, endpoint, arm) if gw.shadow else None
    if gw.capture is not None or shadow is not None:
        exchange = _exchange(gw, request, req, endpoint, capture_id, keep)
        exchange.replica, exchange.model = replica.id, shown
    events = _sse(gw, endpoint, req.model, it, wants_usage, t0, exchange, shown, ticket,
                  arm=arm, shadow=(shadow, req) if shadow is not None else None)  # fmt: skip
    if ticket is not None:
        ticket.guard(events)  # a client gone before the body starts never runs its finally
    return EventStream(
        events,
        headers={**_SSE_HEADERS, **headers},
    )


async def _sse(
    gw: Gateway,
    endpoint: str,
    model: str,
    it: AsyncGenerator[ChatCompletionChunk | Completion, None],
    wants_usage: bool,
    t0: float,
    exchange: Exchange | None,
    shown: str,
    ticket: Ticket | None = None,
    *,
    arm: Arm | None = None,
    shadow: tuple[SplitInfo, ChatCompletionRequest | CompletionRequest] | None = None,
) -> AsyncIterator[bytes]:
    renamed = shown != model
    m = gw.metrics
    label = m.model_label(model)  # the stream opened, so the router serves it
    status, first = "200", True
    assembler = StreamAssembler() if exchange is not None else None
    used: int | None = None  # the engine's usage, sent at the end: settles the estimate
    kept = False  # a stored completion, committed before [DONE]
    try:
        async for chunk in it:
            if assembler is not None:
                assembler.add(chunk)
            usage: Usage | None = getattr(chunk, "usage", None)
            if usage is not None:
                used = usage.total_tokens
                _count_usage(gw, label, usage)
                if not getattr(chunk, "choices", None) and not wants_usage:
                    continue
            if first:
                m.ttft.labels(label).observe(time.perf_counter() - t0)
                first = False
            if renamed:
                chunk.model = shown
            # model_dump_json's bytes before it decodes them to str (then encoded again).
            yield b"data: %b\n\n" % chunk.__pydantic_serializer__.to_json(chunk, exclude_none=True)
        if exchange is not None and assembler is not None and exchange.store:
            # Before [DONE]: a client may close the stream as soon as it has it, and can list
            # the completion at once.
            _answered(exchange, assembler, endpoint, shown, 200, time.perf_counter() - t0)
            kept = True
            await record(gw.capture, exchange)
        yield _DONE
    except APIError as exc:
        # Headers are gone already: report the failure in-stream, as OpenAI does.
        status = str(exc.status_code)
        yield _closing_error(exc)
    except asyncio.CancelledError:
        status = "499"
        m.disconnects.labels(label).inc()
        raise
    except Exception as exc:
        log.exception("stream failed")
        status = "500"
        yield _closing_error(EngineError(f"the stream failed: {type(exc).__name__}"))
    finally:
        _settle(ticket, used)
        await it.aclose()
        elapsed = time.perf_counter() - t0
        m.requests.labels(endpoint, label, status).inc()
        m.latency.labels(endpoint, label).observe(elapsed)
        count_arm(gw.router, arm, int(status), t0)
        if exchange is not None and assembler is not None:
            if not kept:
                _answered(exchange, assembler, endpoint, shown, int(status), elapsed)
                exchange.store = False  # kept only when answered to the end
                submit_safely(gw.capture, exchange)
            if shadow is not None and gw.shadow is not None:
                gw.shadow.offer(shadow[0], shadow[1], exchange)  # after the last chunk


def _closing_error(exc: APIError) -> Closing:
    return Closing(b"data: " + json.dumps(exc.to_dict()).encode() + b"\n\n")


def _answered(
    exchange: Exchange,
    assembler: StreamAssembler,
    endpoint: str,
    shown: str,
    status: int,
    elapsed: float,
) -> None:
    """Fill ``exchange`` with the streamed answer as the client was sent it."""
    exchange.status, exchange.latency_ms = status, elapsed * 1000
    exchange.usage = assembler.usage
    exchange.response = (
        assembler.chat_body(shown) if endpoint == "chat" else assembler.completion_body(shown)
    )


def _settle(ticket: Ticket | None, used: int | None) -> None:
    if ticket is not None:
        ticket.settle(used)


def _count_usage(gw: Gateway, label: str, usage: Usage) -> None:
    gw.metrics.tokens.labels(label, "prompt").inc(usage.prompt_tokens)
    gw.metrics.tokens.labels(label, "completion").inc(usage.completion_tokens)
