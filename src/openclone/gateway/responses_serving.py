"""Serving ``POST /v1/responses``: a chat completion underneath, a Responses API answer on top.

The request is translated to a chat completion and handed to the very function that serves
``/v1/chat/completions`` (:func:`openclone.gateway.serving.serve`), so routing, failover,
registry pins, limits, metrics, capture, consent and disconnect handling are the chat
path's own, with no second copy to drift. Its answer — a JSON body, or the SSE stream of
chunks — is read back and rewritten as a ``response`` object or as typed response events.
With ``store`` (the default) the response and the conversation so far are kept per tenant
for ``GET`` and ``previous_response_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from openclone.errors import InvalidRequestError
from openclone.gateway import responses_wire as wire
from openclone.gateway import serving
from openclone.gateway.responses_stream import EventWriter
from openclone.gateway.state import Gateway
from openclone.schema import ChatCompletion, ChatCompletionChunk, Usage
from openclone.store.accounts import LOCAL, Principal
from openclone.store.responses import ResponseRecord, get_response, save_response

__all__ = ["create_response"]

log = logging.getLogger("openclone.gateway")
_PASS_HEADERS = (
    "x-openclone-capture-id",
    *(f"x-ratelimit-{what}-{kind}" for what in ("limit", "remaining", "reset")
      for kind in ("requests", "tokens")),
)  # fmt: skip


async def create_response(gw: Gateway, request: Request, req: wire.ResponseRequest) -> Response:
    req.check_supported()
    who: Principal = getattr(request.state, "caller", None) or LOCAL
    history: list[dict[str, Any]] = []
    if req.previous_response_id:
        if gw.store is None:
            raise InvalidRequestError(
                "this server keeps no responses to continue from", param="previous_response_id"
            )
        prev = await asyncio.to_thread(
            get_response, gw.store, who.tenant, req.previous_response_id, "previous_response_id"
        )
        history = prev.messages
    items = wire.input_items(req)
    turn = wire.items_to_messages(items)
    chat = wire.chat_request(req, history + turn)
    turn_state = _Turn(gw, who, req, items, history + turn)
    answer = await serving.serve(gw, request, chat)
    headers = {k: v for k, v in answer.headers.items() if k in _PASS_HEADERS}
    if isinstance(answer, StreamingResponse):
        return StreamingResponse(
            _events(turn_state, answer),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **headers},
        )
    if answer.status_code != 200:  # the client left (499): nobody reads this
        return answer
    completion = ChatCompletion.model_validate_json(bytes(answer.body))
    choice = completion.choices[0]
    logprobs = (
        wire.logprob_items(choice.logprobs.content)
        if req.wants_logprobs and choice.logprobs is not None
        else None
    )
    message = choice.message.model_dump(exclude_none=True)
    output = wire.output_items(message, choice.finish_reason, logprobs)
    status = "incomplete" if choice.finish_reason == "length" else "completed"
    body = turn_state.response(completion.model, status, output, completion.usage)
    await turn_state.keep(body)
    return Response(json.dumps(body), media_type="application/json", headers=headers)


class _Turn:
    """One request's identity and conversation, to build and keep its response."""

    def __init__(
        self,
        gw: Gateway,
        who: Principal,
        req: wire.ResponseRequest,
        items: list[dict[str, Any]],
        messages: list[dict[str, Any]],
    ) -> None:
        self.gw, self.who, self.req = gw, who, req
        self.items, self.messages = items, messages
        self.id = wire.item_id("resp")
        self.created = time.time()

    def response(
        self, model: str, status: str, output: list[dict[str, Any]], usage: Usage | None
    ) -> dict[str, Any]:
        return wire.response_object(
            self.req, id=self.id, model=model, created_at=self.created, status=status,
            output=output, usage=usage,
        )  # fmt: skip

    async def keep(self, body: dict[str, Any]) -> None:
        store = self.gw.store
        if not self.req.stored or store is None:
            return
        record = ResponseRecord(
            id=self.id, model=body["model"], body=body, input_items=self.items,
            messages=[*self.messages, wire.assistant_message(body["output"])],
            previous_id=self.req.previous_response_id, created=self.created,
        )  # fmt: skip
        # The person the capture names (the chat request's `user`), so one erasure takes both.
        user = self.who.user or self.req.user or self.req.safety_identifier
        try:
            await asyncio.to_thread(save_response, store, self.who.tenant, user, record)
        except Exception:  # the answer is made and paid for: the client still gets it
            log.exception("could not store response %s", self.id)


async def _events(turn: _Turn, answer: StreamingResponse) -> AsyncIterator[bytes]:
    model = turn.req.model  # until the first chunk names the model as the client sees it
    # Late binding on purpose: snapshots after the first chunk carry the shown model name.
    writer = EventWriter(lambda status, output, usage: turn.response(model, status, output, usage))
    for event in writer.start():
        yield event
    body = answer.body_iterator
    try:
        async for frame in _frames(body):
            if "error" in frame:  # the engine failed after the first chunk
                for event in writer.fail(frame["error"]):
                    yield event
                return
            chunk = ChatCompletionChunk.model_validate(frame)
            model = chunk.model
            for event in writer.add(chunk):
                yield event
        for event in writer.end():
            yield event
        if writer.final is not None:
            await turn.keep(writer.final)
    finally:
        # Closing the chat stream ends its generation (client gone) and lets it count and
        # capture the exchange, exactly as for a chat client.
        with contextlib.suppress(Exception):
            await body.aclose()  # type: ignore[attr-defined]


async def _frames(body: AsyncIterable[Any]) -> AsyncIterator[dict[str, Any]]:
    """The JSON objects of an SSE body of ``data:`` lines, up to ``[DONE]``."""
    buf = b""
    async for piece in body:
        buf += piece.encode() if isinstance(piece, str) else bytes(piece)
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            data = event.removeprefix(b"data: ").strip()
            if data == b"[DONE]":
                return
            if data:
                yield json.loads(data)
