"""Answering batches in the server's background, after live traffic.

One task per gateway takes the pending batches oldest first and sends their requests
through the very functions that serve ``/v1/chat/completions``, ``/v1/responses`` and
``/v1/embeddings`` (routing, registry pins, the tenant's rate limits, capture and consent
as for any request, as the person who created the batch). At most ``batch_concurrency``
requests run at once, and none starts while the model it needs is answering live requests:
live traffic goes first. A batch whose deadline (``completion_window``) passes ends as
``expired``, one that is cancelled as ``cancelled``; what was answered by then is in its
output and error files either way. Each answer is recorded as it comes, so a restarted
server goes on with what is left.

Gateways sharing PostgreSQL each run this task; a batch is run by the one holding its
lease (:func:`openclone.store.batches.claim_batch`), renewed while it runs. Should that
gateway die, another takes the batch over once the lease runs out and answers the lines
still unanswered; should a runner find its lease gone (taken over, or the batch erased), it
stops and writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from asyncio import FIRST_COMPLETED
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from openclone.errors import APIError, InvalidRequestError, RateLimited
from openclone.gateway import serving
from openclone.gateway.embeddings_serving import embed
from openclone.gateway.responses_serving import create_response
from openclone.gateway.responses_wire import ResponseRequest
from openclone.gateway.state import Gateway
from openclone.schema import ChatCompletionRequest, EmbeddingRequest
from openclone.store.accounts import Principal
from openclone.store.batches import (
    LEASE_SECONDS,
    LOST,
    BatchWork,
    claim_batch,
    finish_batch,
    load_work,
    pending_batch_ids,
    record_results,
    renew_lease,
    start_batch,
)

__all__ = ["run_batches"]

log = logging.getLogger("openclone.gateway")
Result = tuple[int, bool, dict[str, Any], int, int]  # line, ok, output line, tokens in, out
_IDLE = 1.0  # seconds between looks for new batches
_LIVE_POLL = 0.05  # seconds between looks at the model's live requests


async def run_batches(gw: Gateway) -> None:
    """Answer pending batches until cancelled (the router's close cancels it)."""
    # This runner among those sharing the store: unique per process and start.
    owner = f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(6)}"
    while True:
        try:
            ids = await asyncio.to_thread(pending_batch_ids, gw.store, owner) if gw.store else []
            for batch_id in ids:
                assert gw.store is not None
                if await asyncio.to_thread(claim_batch, gw.store, batch_id, owner):
                    await _run(gw, batch_id, owner)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the batch runner failed; trying again")
        await asyncio.sleep(_IDLE)


async def _keep_lease(gw: Gateway, batch_id: str, owner: str, lost: asyncio.Event) -> None:
    """Renew the lease while the batch runs, also while it waits for live traffic."""
    assert gw.store is not None
    while not lost.is_set():
        await asyncio.sleep(LEASE_SECONDS / 4)
        try:
            if not await asyncio.to_thread(renew_lease, gw.store, batch_id, owner):
                lost.set()
        except Exception:  # the database is away: record_results will say if it is lost
            log.warning("renewing the lease of batch %s failed", batch_id, exc_info=True)


async def _run(gw: Gateway, batch_id: str, owner: str) -> None:
    assert gw.store is not None
    store = gw.store
    work = await asyncio.to_thread(load_work, store, batch_id, owner)
    if work is None:
        return
    status = await asyncio.to_thread(start_batch, store, batch_id, owner)
    deadline = work.expires_at
    todo = list(work.requests)
    busy: dict[int, int] = {}  # route (by id) -> this runner's requests on it
    running: dict[asyncio.Task[Result], tuple[int, dict[str, Any]]] = {}
    lost = asyncio.Event()
    keeper = asyncio.create_task(_keep_lease(gw, batch_id, owner, lost))
    try:
        while (
            (todo or running)
            and status not in ("cancelling", LOST)
            and not lost.is_set()
            and time.time() <= deadline
        ):
            if todo and len(running) < max(1, gw.settings.batch_concurrency):
                key = await _after_live(gw, todo[0][1], busy, deadline)
                line, request = todo.pop(0)
                task = asyncio.create_task(_answer(gw, work, line, request, busy, key))
                running[task] = (line, request)
                continue
            done, _ = await asyncio.wait(running, timeout=1.0, return_when=FIRST_COMPLETED)
            results = [t.result() for t in done]
            for t in done:
                del running[t]
            # Also how a cancel made elsewhere is seen, at least once a second.
            status, deadline = await asyncio.to_thread(
                record_results, store, batch_id, owner, results
            )
    finally:
        tasks: list[asyncio.Task[Any]] = [keeper, *running]
        for task in tasks:  # a deadline or cancel mid-request: those are not answered
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if status == LOST or lost.is_set():
        log.info("batch %s is no longer this gateway's (taken over or erased)", batch_id)
        return
    unanswered = sorted([*todo, *running.values()], key=lambda r: r[0])
    if status == "cancelling":
        final = "cancelled"
    elif unanswered:
        final = "expired"
    else:
        final = "completed"
    await asyncio.to_thread(
        finish_batch, store, batch_id, final, owner=owner, unanswered=unanswered
    )


async def _after_live(
    gw: Gateway, request: dict[str, Any], busy: dict[int, int], deadline: float
) -> int | None:
    """Wait while the engine this request needs serves requests other than this runner's
    (until the batch's deadline); the key of its route in ``busy``."""
    model = str((request.get("body") or {}).get("model", ""))
    try:
        route = await gw.router.route_for(gw.router.pin(model)[1])
    except APIError:
        return None  # the request itself fails, with the reason
    key = id(route)
    while sum(r.in_flight for r in route.replicas) > busy.get(key, 0):
        if time.time() > deadline:
            break
        await asyncio.sleep(_LIVE_POLL)
    return key


async def _answer(
    gw: Gateway,
    work: BatchWork,
    line: int,
    request: dict[str, Any],
    busy: dict[int, int],
    key: int | None,
) -> Result:
    body = dict(request.get("body") or {})
    if key is not None:
        busy[key] = busy.get(key, 0) + 1
    try:
        status, answer = await _call(gw, work, body)
    finally:
        if key is not None:
            busy[key] -= 1
    usage = answer.get("usage") or {}
    tokens_in = int(usage.get("prompt_tokens") or usage.get("input_tokens") or 0)
    tokens_out = int(usage.get("completion_tokens") or usage.get("output_tokens") or 0)
    out = {
        "id": "batch_req_" + secrets.token_hex(12),
        "custom_id": request.get("custom_id"),
        "response": {"status_code": status, "request_id": secrets.token_hex(12), "body": answer},
        "error": None,
    }
    return line, status == 200, out, tokens_in, tokens_out


async def _call(gw: Gateway, work: BatchWork, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) of one request, as its endpoint would have answered it."""
    while True:
        try:
            return 200, await _serve(gw, work, body)
        except RateLimited as exc:  # the tenant's limits hold for batches too: wait a while
            wait = float((getattr(exc, "headers", None) or {}).get("Retry-After", 1))
            if time.time() + wait > work.expires_at:  # the deadline it started with
                return exc.status_code, exc.to_dict()
            await asyncio.sleep(wait)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            err = InvalidRequestError(f"Invalid value for '{where}': {first['msg']}.", param=where)
            return err.status_code, err.to_dict()
        except APIError as exc:
            return exc.status_code, exc.to_dict()
        except Exception as exc:  # one request's failure never stops its batch
            log.exception("a batch request failed")
            return 500, APIError(f"internal error: {type(exc).__name__}").to_dict()


async def _serve(gw: Gateway, work: BatchWork, body: dict[str, Any]) -> dict[str, Any]:
    request = _request(work.caller, work.endpoint)
    if work.endpoint == "/v1/embeddings":
        result = await embed(gw, EmbeddingRequest.model_validate(body), work.caller)
        return result.model_dump(exclude_none=True)
    answer: Response
    if work.endpoint == "/v1/responses":
        answer = await create_response(gw, request, ResponseRequest.model_validate(body))
    else:
        answer = await serving.serve(gw, request, ChatCompletionRequest.model_validate(body))
    data: dict[str, Any] = json.loads(bytes(answer.body))
    return data


def _request(who: Principal, path: str) -> Request:
    """The request a batch line stands for: its creator as the caller, no client to leave."""

    async def receive() -> Message:
        await asyncio.Event().wait()  # never: nobody disconnects from a batch
        return {"type": "http.disconnect"}

    scope = {"type": "http", "method": "POST", "path": path, "headers": [], "query_string": b"",
             "state": {"caller": who}}  # fmt: skip
    return Request(scope, receive)
