"""The capture hook: every finished exchange is handed to a sink, which must never block.

The gateway builds an :class:`Exchange` (request, response — a streamed one assembled —
model, replica, usage, latency, caller) and calls ``sink.submit``. The store's writer is
the production sink; with no sink configured the gateway skips the work entirely.
Capture never slows or fails a request: a sink that raises is logged and ignored.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from openclone.schema import ChatCompletionChunk, Completion, Usage
from openclone.store.exchange import Exchange

log = logging.getLogger("openclone.capture")

__all__ = [
    "CaptureSink",
    "Exchange",
    "KeepingSink",
    "StreamAssembler",
    "can_keep",
    "exchange_for",
    "new_capture_id",
    "record",
    "submit_safely",
]


def new_capture_id() -> str:
    return uuid.uuid4().hex


def exchange_for(
    headers: Mapping[str, str],
    who: Any,
    *,
    capture_id: str,
    endpoint: str,
    model: str,
    request: dict[str, Any],
    stream: bool,
    body_user: str | None,
    conversation: bool = True,
    keep: dict[str, str] | None = None,
) -> Exchange:
    """An unanswered exchange of caller ``who`` (a Principal, or None without auth): the
    identity and consent every endpoint records alike. ``body_user`` is the request's own
    ``user``: the person when the key names none."""
    train = headers.get("x-openclone-train")
    return Exchange(
        id=capture_id,
        endpoint=endpoint,
        model=model,
        request=request,
        response=None,
        status=0,
        latency_ms=0.0,
        stream=stream,
        tenant=getattr(who, "tenant", None),
        user=getattr(who, "user", None) or body_user,
        user_from_key=getattr(who, "user", None) is not None,
        key_id=getattr(who, "key_id", None),
        conversation=headers.get("x-openclone-conversation") if conversation else None,
        train=None if train is None else train.strip().lower() in ("1", "true", "yes", "on"),
        store=keep is not None,
        metadata=keep,
    )


class CaptureSink(Protocol):
    def submit(self, exchange: Exchange) -> None:
        """Queue the exchange; must return at once and never raise for a full queue."""
        ...


@runtime_checkable
class KeepingSink(CaptureSink, Protocol):
    """A sink that can also commit at once: what ``store: true`` needs (the store's writer)."""

    def write_now(self, batch: list[Exchange]) -> int:
        """Commit ``batch`` before returning (blocking); returns how many were not stored."""
        ...


def can_keep(sink: CaptureSink | None) -> bool:
    return isinstance(sink, KeepingSink)


async def record(sink: CaptureSink | None, exchange: Exchange) -> None:
    """Capture ``exchange``; one the client asked to keep (``store: true``) is committed
    before this returns, so the client can list it as soon as it has its answer. A failure
    is logged, never raised."""
    if exchange.store and isinstance(sink, KeepingSink):
        try:
            await asyncio.to_thread(sink.write_now, [exchange])
        except Exception:
            log.exception("stored completion %s not recorded", exchange.id)
        return
    submit_safely(sink, exchange)


def submit_safely(sink: CaptureSink | None, exchange: Exchange) -> None:
    if sink is None:
        return
    try:
        sink.submit(exchange)
    except Exception:  # capture must never fail the request it records
        log.exception("capture sink failed; exchange %s not recorded", exchange.id)


class StreamAssembler:
    """Rebuilds a non-streaming response body from the chunks a client was sent."""

    def __init__(self) -> None:
        self._text: dict[int, list[str]] = {}
        self._tools: dict[int, list[dict[str, Any]]] = {}
        self._finish: dict[int, str | None] = {}
        self.id: str | None = None
        self.usage: Usage | None = None

    def add(self, chunk: ChatCompletionChunk | Completion) -> None:
        self.id = self.id or chunk.id
        if chunk.usage is not None:
            self.usage = chunk.usage
        for choice in chunk.choices:
            idx = choice.index
            if isinstance(chunk, Completion):
                text = choice.text  # type: ignore[union-attr]
            else:
                delta = choice.delta  # type: ignore[union-attr]
                text = delta.content
                if delta.tool_calls:
                    self._tools.setdefault(idx, []).extend(delta.tool_calls)
            if text:
                self._text.setdefault(idx, []).append(text)
            if choice.finish_reason:
                self._finish[idx] = choice.finish_reason

    def chat_body(self, model: str) -> dict[str, Any]:
        choices = []
        for idx in sorted(set(self._text) | set(self._tools) | set(self._finish)):
            message: dict[str, Any] = {
                "role": "assistant",
                "content": "".join(self._text.get(idx, [])) or None,
            }
            if idx in self._tools:
                message["tool_calls"] = [
                    {k: v for k, v in c.items() if k != "index"} for c in self._tools[idx]
                ]
            choices.append(
                {"index": idx, "message": message, "finish_reason": self._finish.get(idx)}
            )
        return self._body("chat.completion", model, choices)

    def completion_body(self, model: str) -> dict[str, Any]:
        choices = [
            {
                "index": idx,
                "text": "".join(self._text.get(idx, [])),
                "finish_reason": self._finish.get(idx),
            }
            for idx in sorted(set(self._text) | set(self._finish))
        ]
        return self._body("text_completion", model, choices)

    def _body(self, obj: str, model: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "object": obj, "model": model, "choices": choices}
        if self.usage is not None:
            body["usage"] = self.usage.model_dump()
        return body
