"""The Responses API's wire shapes, and their translation to and from a chat completion.

A Responses request becomes one :class:`ChatCompletionRequest` (``instructions`` a system
message, the conversation so far, this turn's input items as messages, function tools as
chat tools, ``text.format`` as ``response_format``), so every engine that can chat answers
it. The chat answer becomes output items: a ``message`` with its ``output_text`` and one
``function_call`` per tool call.

Whatever OpenClone cannot honour (hosted tools, reasoning, background mode, a field it does
not know) is refused with ``unsupported_parameter`` naming the field, never ignored.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from openclone.errors import InvalidRequestError, UnsupportedParameter
from openclone.schema import ChatCompletionRequest, TokenLogprob, TopLogprob, Usage

__all__ = [
    "ResponseRequest",
    "assistant_message",
    "call_item",
    "chat_request",
    "check_include",
    "input_items",
    "item_id",
    "items_to_messages",
    "logprob_items",
    "message_item",
    "output_items",
    "response_object",
    "usage_object",
]

# Accepted and without effect here: a routing hint for OpenAI's own prompt cache (OpenClone
# scopes its cache per tenant anyway), a service tier, and stream padding.
_HARMLESS = {"prompt_cache_key", "prompt_cache_retention", "service_tier", "stream_options"}
# Refused unless absent, null or false.
_UNSUPPORTED = (
    "background", "conversation", "prompt", "reasoning", "max_tool_calls",
    "context_management", "moderation",
)  # fmt: skip
LOGPROBS = "message.output_text.logprobs"
# The include values honoured: the answer's logprobs; and the encrypted reasoning clients
# such as the Agents SDK ask for with store=false, truthfully empty here because OpenClone
# writes no reasoning items. The others are outputs of hosted tools (refused) or of inputs.
_INCLUDABLE = (LOGPROBS, "reasoning.encrypted_content")
_TEXT_PARTS = {"input_text", "output_text", "text"}


class ResponseRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: dict[str, Any] | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    store: bool | None = None  # None: true, as OpenAI stores by default
    stream: bool = False
    previous_response_id: str | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    include: list[str] | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    truncation: Literal["auto", "disabled"] | None = None

    @property
    def stored(self) -> bool:
        return self.store is not False

    @property
    def wants_logprobs(self) -> bool:
        """The output text's logprobs were asked for (``top_logprobs`` asks for them too)."""
        return LOGPROBS in (self.include or ()) or self.top_logprobs is not None

    def check_supported(self) -> None:
        extra = self.model_extra or {}
        for name in _UNSUPPORTED:
            if extra.get(name) not in (None, False):
                raise UnsupportedParameter(
                    f"'{name}' is not supported by OpenClone's Responses API", param=name
                )
        for name in extra:
            if name not in _HARMLESS and name not in _UNSUPPORTED:
                raise UnsupportedParameter(f"Unknown parameter: '{name}'.", param=name)
        check_include(self.include)
        if self.truncation == "auto":
            # Dropping earlier turns silently would change the answer: the client decides.
            raise UnsupportedParameter(
                "truncation 'auto' is not supported; a conversation longer than the model's "
                "context is refused with context_length_exceeded",
                param="truncation",
            )


def check_include(include: list[str] | None) -> None:
    for i, value in enumerate(include or ()):
        if value not in _INCLUDABLE:
            raise UnsupportedParameter(
                f"include value '{value}' is not supported; OpenClone can include: "
                + ", ".join(_INCLUDABLE),
                param=f"include[{i}]",
            )


def item_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


# ---- request → chat ----------------------------------------------------------------------


def input_items(req: ResponseRequest) -> list[dict[str, Any]]:
    """This turn's input as stored items (with ids), in the shape ``input_items`` lists."""
    if req.input is None:
        return []
    if isinstance(req.input, str):
        return [_message_item({"role": "user", "content": req.input}, 0)]
    return [_item(raw, i) for i, raw in enumerate(req.input)]


def _item(raw: dict[str, Any], i: int) -> dict[str, Any]:
    kind = raw.get("type") or ("message" if "role" in raw else None)
    if kind == "message":
        return _message_item(raw, i)
    if kind == "function_call":
        _need(raw, i, "call_id", "name", "arguments")
        return {
            "id": raw.get("id") or item_id("fc"), "type": "function_call", "status": "completed",
            "call_id": raw["call_id"], "name": raw["name"], "arguments": raw["arguments"],
        }  # fmt: skip
    if kind == "function_call_output":
        _need(raw, i, "call_id", "output")
        return {
            "id": raw.get("id") or item_id("fco"), "type": "function_call_output",
            "status": "completed", "call_id": raw["call_id"], "output": raw["output"],
        }  # fmt: skip
    raise UnsupportedParameter(
        f"input items of type {kind!r} are not supported; use message, function_call or "
        "function_call_output items",
        param=f"input[{i}].type",
    )


def _need(raw: dict[str, Any], i: int, *names: str) -> None:
    for name in names:
        if raw.get(name) is None:
            raise InvalidRequestError(
                f"Missing required parameter: 'input[{i}].{name}'.", param=f"input[{i}].{name}"
            )


def _message_item(raw: dict[str, Any], i: int) -> dict[str, Any]:
    role = raw.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise InvalidRequestError(
            f"Invalid value for 'input[{i}].role': {role!r}; expected user, assistant, system "
            "or developer.",
            param=f"input[{i}].role",
        )
    content = raw.get("content")
    text_type = "output_text" if role == "assistant" else "input_text"
    if isinstance(content, str):
        parts: list[dict[str, Any]] = [{"type": text_type, "text": content}]
    elif isinstance(content, list):
        parts = []
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in _TEXT_PARTS:
                parts.append({"type": text_type, "text": str(part.get("text") or "")})
            elif kind == "input_image" and part.get("image_url"):
                parts.append({"type": "input_image", "image_url": part["image_url"],
                              "detail": part.get("detail", "auto")})  # fmt: skip
            else:
                raise UnsupportedParameter(
                    f"content parts of type {kind!r} are not supported",
                    param=f"input[{i}].content[{j}].type",
                )
    else:
        raise InvalidRequestError(
            f"Missing required parameter: 'input[{i}].content'.", param=f"input[{i}].content"
        )
    if role == "assistant":
        for p in parts:
            p.setdefault("annotations", [])
    return {
        "id": raw.get("id") or item_id("msg"), "type": "message", "role": role,
        "content": parts, "status": "completed",
    }  # fmt: skip


def items_to_messages(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Input items as chat messages; a run of function calls is one assistant message."""
    messages: list[dict[str, Any]] = []
    for item in items:
        if item["type"] == "message":
            messages.append({"role": item["role"], "content": _chat_content(item["content"])})
        elif item["type"] == "function_call":
            call = {
                "id": item["call_id"], "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }  # fmt: skip
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)  # parallel calls of one turn
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        else:
            output = item["output"]
            text = output if isinstance(output, str) else _chat_content(output)
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": text})
    return messages


def _chat_content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
        raise InvalidRequestError(
            "content must be a string or a list of content parts (objects)", param="input"
        )
    if all(p.get("type") in _TEXT_PARTS for p in parts):
        return "".join(str(p.get("text") or "") for p in parts)
    # Images stay parts: an engine that can see them does, one that cannot says so.
    return [
        {"type": "text", "text": p.get("text") or ""}
        if p.get("type") in _TEXT_PARTS
        else {"type": "image_url", "image_url": {"url": p.get("image_url"),
                                                 "detail": p.get("detail", "auto")}}
        for p in parts
    ]  # fmt: skip


def chat_request(req: ResponseRequest, messages: list[dict[str, Any]]) -> ChatCompletionRequest:
    """The chat completion that answers ``req``, given the conversation's ``messages``."""
    if not messages:
        raise InvalidRequestError("Missing required parameter: 'input'.", param="input")
    body: dict[str, Any] = {"model": req.model, "messages": messages}
    if req.instructions:
        body["messages"] = [{"role": "system", "content": req.instructions}, *messages]
    optional = {
        "max_completion_tokens": req.max_output_tokens,
        "temperature": req.temperature,
        "top_p": req.top_p,
        "user": req.user or req.safety_identifier,
        "parallel_tool_calls": req.parallel_tool_calls,
        "tools": _chat_tools(req.tools) if req.tools else None,
        "tool_choice": _chat_tool_choice(req.tool_choice),
        "response_format": _response_format(req.text),
        "logprobs": True if req.wants_logprobs else None,
        "top_logprobs": req.top_logprobs or None,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    if req.stream:
        body.update(stream=True, stream_options={"include_usage": True})
    try:
        return ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidRequestError(f"Invalid request: {first.get('msg', exc)}") from exc


def _chat_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, tool in enumerate(tools):
        if tool.get("type") != "function":
            raise UnsupportedParameter(
                f"tools of type {tool.get('type')!r} are not supported; only function tools are",
                param=f"tools[{i}].type",
            )
        if not tool.get("name"):
            raise InvalidRequestError(
                f"Missing required parameter: 'tools[{i}].name'.", param=f"tools[{i}].name"
            )
        fn = {k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}
        out.append({"type": "function", "function": fn})
    return out


def _chat_tool_choice(choice: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    if choice is None or isinstance(choice, str):
        return choice
    if choice.get("type") == "function" and choice.get("name"):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise UnsupportedParameter(
        f"tool_choice of type {choice.get('type')!r} is not supported", param="tool_choice"
    )


def _response_format(text: dict[str, Any] | None) -> dict[str, Any] | None:
    if not text:
        return None
    if text.get("verbosity") not in (None, "medium"):
        raise UnsupportedParameter("text.verbosity is not supported", param="text.verbosity")
    fmt = text.get("format") or {"type": "text"}
    if not isinstance(fmt, dict):
        raise InvalidRequestError(
            'text.format must be an object such as {"type": "json_object"}',
            param="text.format",
        )
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        if not isinstance(fmt.get("schema"), dict):
            raise InvalidRequestError(
                "Missing required parameter: 'text.format.schema'.", param="text.format.schema"
            )
        schema = {k: fmt[k] for k in ("name", "description", "schema", "strict") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    raise InvalidRequestError(
        f"Invalid value for 'text.format.type': {kind!r}; expected text, json_object or "
        "json_schema.",
        param="text.format.type",
    )


# ---- chat → response ---------------------------------------------------------------------


def message_item(
    text: str,
    status: str,
    item: str | None = None,
    logprobs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs or []}
    return {"id": item or item_id("msg"), "type": "message", "status": status,
            "role": "assistant", "content": [part]}  # fmt: skip


def logprob_items(tokens: list[TokenLogprob] | None) -> list[dict[str, Any]]:
    """A chat answer's token logprobs in the Responses shape (``bytes`` always given)."""

    def one(t: TopLogprob) -> dict[str, Any]:
        raw = t.bytes if t.bytes is not None else list(t.token.encode("utf-8"))
        return {"token": t.token, "logprob": t.logprob, "bytes": raw}

    return [{**one(t), "top_logprobs": [one(x) for x in t.top_logprobs]} for t in tokens or []]


def call_item(call: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    fn = call.get("function") or {}
    return {
        "id": item_id("fc"), "type": "function_call", "status": status,
        "call_id": call.get("id") or item_id("call"), "name": fn.get("name", ""),
        "arguments": fn.get("arguments", ""),
    }  # fmt: skip


def output_items(
    message: dict[str, Any],
    finish_reason: str | None,
    logprobs: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """A chat answer's message (and its text's ``logprobs``) as Responses output items."""
    status = "incomplete" if finish_reason == "length" else "completed"
    text = message.get("content")
    out = [message_item(text, status, logprobs=logprobs)] if text else []
    out.extend(call_item(c) for c in message.get("tool_calls") or [])
    return out


def assistant_message(output: list[dict[str, Any]]) -> dict[str, Any]:
    """Output items as the one assistant chat message a follow-up turn continues from."""
    text = "".join(p["text"] for it in output if it["type"] == "message" for p in it["content"])
    calls = [
        {"id": it["call_id"], "type": "function",
         "function": {"name": it["name"], "arguments": it["arguments"]}}
        for it in output if it["type"] == "function_call"
    ]  # fmt: skip
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    return message


def usage_object(usage: Usage | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


def response_object(
    req: ResponseRequest,
    *,
    id: str,
    model: str,
    created_at: float,
    status: str,
    output: list[dict[str, Any]],
    usage: Usage | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``response`` object, echoing the request's settings as OpenAI does."""
    done = status in ("completed", "incomplete", "failed")
    return {
        "id": id,
        "object": "response",
        "created_at": int(created_at),
        "status": status,
        "completed_at": int(time.time()) if status == "completed" else None,
        "error": error,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": req.instructions,
        "max_output_tokens": req.max_output_tokens,
        "model": model,
        "output": output,
        "parallel_tool_calls": req.parallel_tool_calls is not False,
        "previous_response_id": req.previous_response_id,
        "reasoning": {"effort": None, "summary": None},
        "store": req.stored,
        "temperature": 1.0 if req.temperature is None else req.temperature,
        "text": {"format": (req.text or {}).get("format") or {"type": "text"}},
        "tool_choice": req.tool_choice or "auto",
        "tools": req.tools or [],
        "top_logprobs": req.top_logprobs,
        "top_p": 1.0 if req.top_p is None else req.top_p,
        "truncation": req.truncation or "disabled",
        "usage": usage_object(usage) if done else None,
        "user": req.user,
        "metadata": req.metadata or {},
    }
