"""Chat completion chunks → the Responses API's typed stream events.

The events follow OpenAI's order: ``response.created`` and ``response.in_progress``; per
output item ``response.output_item.added``, then for a message ``content_part.added``,
``output_text.delta``… ``output_text.done``, ``content_part.done`` (for a function call
``function_call_arguments.delta``… ``.done``), then ``response.output_item.done``; and at
the end ``response.completed`` (``response.incomplete`` when ``max_output_tokens`` cut it,
``error`` + ``response.failed`` when the engine failed). Every event carries a
``sequence_number``, and each goes out as ``event: TYPE`` + ``data: JSON`` as OpenAI sends it.

:func:`replay` streams a stored response again (``GET /v1/responses/{id}?stream=true``):
the same events in the same order, each item's text or arguments in one delta.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from openclone.gateway.responses_wire import call_item, item_id, logprob_items, message_item
from openclone.schema import ChatCompletionChunk, Usage

__all__ = ["EventWriter", "replay"]


class EventWriter:
    """One response's stream: feed it chunks, send what it returns."""

    def __init__(self, snapshot: Callable[[str, list[dict[str, Any]], Usage | None], dict]):
        # snapshot(status, output, usage) -> the response object at that moment
        self._snapshot = snapshot
        self.seq = 0
        self.output: list[dict[str, Any]] = []  # items as they stand (done ones complete)
        self.usage: Usage | None = None
        self.finish: str | None = None
        self.status = "in_progress"
        self.final: dict[str, Any] | None = None  # the response sent at the end
        self._text: dict[str, Any] | None = None  # the message item being written
        self._calls: dict[int, dict[str, Any]] = {}  # chat tool-call index → open item

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = json.dumps({"type": kind, "sequence_number": self.seq, **fields})
        self.seq += 1
        return f"event: {kind}\ndata: {data}\n\n".encode()

    def start(self) -> list[bytes]:
        response = self._snapshot("in_progress", [], None)
        return [
            self._event("response.created", response=response),
            self._event("response.in_progress", response=response),
        ]

    def add(self, chunk: ChatCompletionChunk) -> list[bytes]:
        out: list[bytes] = []
        if chunk.usage is not None:
            self.usage = chunk.usage
        for choice in chunk.choices[:1]:  # a Responses request asks for one answer
            delta = choice.delta
            if delta.content:
                tokens = choice.logprobs.content if choice.logprobs is not None else None
                out += self._text_delta(delta.content, logprob_items(tokens))
            for call in delta.tool_calls or []:
                out += self._call_delta(call)
            if choice.finish_reason:
                self.finish = choice.finish_reason
        return out

    def _text_delta(self, text: str, logprobs: list[dict[str, Any]]) -> list[bytes]:
        out: list[bytes] = []
        item = self._text
        if item is None:
            item = self._text = message_item("", "in_progress", item_id("msg"))
            part = item["content"].pop()
            self.output.append(item)
            out.append(self._added(item))
            out.append(self._event("response.content_part.added", part=part, **self._at(item)))
            item["content"].append(part)
        item["content"][0]["text"] += text
        item["content"][0]["logprobs"] += logprobs
        out.append(self._event("response.output_text.delta", delta=text, logprobs=logprobs,
                               **self._at(item)))  # fmt: skip
        return out

    def _call_delta(self, call: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        index = int(call.get("index", 0))
        item = self._calls.get(index)
        if item is None:
            out += self._close_text()  # items are written one after another
            item = self._calls[index] = call_item(call, "in_progress")
            item["arguments"] = ""
            self.output.append(item)
            out.append(self._added(item))
        fragment = (call.get("function") or {}).get("arguments") or ""
        if fragment:
            item["arguments"] += fragment
            out.append(self._event("response.function_call_arguments.delta", delta=fragment,
                                   item_id=item["id"], output_index=self._index(item)))  # fmt: skip
        return out

    def _added(self, item: dict[str, Any]) -> bytes:
        return self._event("response.output_item.added", output_index=self._index(item), item=item)

    def _index(self, item: dict[str, Any]) -> int:
        return next(i for i, it in enumerate(self.output) if it is item)

    def _at(self, item: dict[str, Any]) -> dict[str, Any]:
        return {"item_id": item["id"], "output_index": self._index(item), "content_index": 0}

    def _close_text(self) -> list[bytes]:
        item, self._text = self._text, None
        if item is None:
            return []
        item["status"] = self._item_status()
        part = item["content"][0]
        return [
            self._event("response.output_text.done", text=part["text"],
                        logprobs=part["logprobs"], **self._at(item)),
            self._event("response.content_part.done", part=part, **self._at(item)),
            self._event("response.output_item.done", output_index=self._index(item), item=item),
        ]  # fmt: skip

    def _close_calls(self) -> list[bytes]:
        out: list[bytes] = []
        for item in self._calls.values():
            item["status"] = "completed"
            out.append(self._event("response.function_call_arguments.done",
                                   arguments=item["arguments"], item_id=item["id"],
                                   output_index=self._index(item)))  # fmt: skip
            out.append(
                self._event("response.output_item.done", output_index=self._index(item), item=item)
            )
        self._calls = {}
        return out

    def _item_status(self) -> str:
        return "incomplete" if self.finish == "length" else "completed"

    def end(self) -> list[bytes]:
        """Close every open item and send the final response."""
        out = self._close_text() + self._close_calls()
        self.status = self._item_status()
        self.final = self._snapshot(self.status, self.output, self.usage)
        return [*out, self._event(f"response.{self.status}", response=self.final)]

    def fail(self, error: dict[str, Any]) -> list[bytes]:
        """The engine failed mid-answer: an ``error`` event, then ``response.failed``."""
        self.status = "failed"
        err = {"code": error.get("code") or error.get("type") or "server_error",
               "message": error.get("message") or "the response failed"}  # fmt: skip
        response = self._snapshot("failed", self.output, self.usage)
        response["error"] = err
        return [
            self._event("error", code=err["code"], message=err["message"],
                        param=error.get("param")),
            self._event("response.failed", response=response),
        ]  # fmt: skip


def replay(body: dict[str, Any], starting_after: int | None = None) -> list[bytes]:
    """The events that stream the stored response ``body``, those numbered after
    ``starting_after`` (a client resuming a stream it lost)."""

    def snapshot(status: str, output: list[dict[str, Any]], usage: Usage | None) -> dict:
        return {**body, "status": status, "output": output, "completed_at": None, "usage": None}

    w = EventWriter(snapshot)
    events = w.start()
    for index, item in enumerate(body.get("output") or []):
        if item.get("type") == "message":
            events += _replay_message(w, index, item)
        elif item.get("type") == "function_call":
            args = item.get("arguments") or ""
            at = {"item_id": item["id"], "output_index": index}
            events.append(w._event("response.output_item.added", output_index=index,
                                   item={**item, "status": "in_progress", "arguments": ""}))  # fmt: skip
            if args:
                events.append(w._event("response.function_call_arguments.delta", delta=args, **at))
            events.append(w._event("response.function_call_arguments.done", arguments=args, **at))
        events.append(w._event("response.output_item.done", output_index=index, item=item))
    events.append(w._event(f"response.{body.get('status', 'completed')}", response=body))
    return events[starting_after + 1 :] if starting_after is not None else events


def _replay_message(w: EventWriter, index: int, item: dict[str, Any]) -> list[bytes]:
    events = [w._event("response.output_item.added", output_index=index,
                       item={**item, "status": "in_progress", "content": []})]  # fmt: skip
    for c, part in enumerate(item.get("content") or []):
        at = {"item_id": item["id"], "output_index": index, "content_index": c}
        text, logprobs = part.get("text") or "", part.get("logprobs") or []
        events.append(w._event("response.content_part.added",
                               part={**part, "text": "", "logprobs": []}, **at))  # fmt: skip
        if text:
            events.append(w._event("response.output_text.delta", delta=text, logprobs=logprobs,
                                   **at))  # fmt: skip
        events.append(w._event("response.output_text.done", text=text, logprobs=logprobs, **at))
        events.append(w._event("response.content_part.done", part=part, **at))
    return events
