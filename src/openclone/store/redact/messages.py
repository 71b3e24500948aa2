"""Redacting OpenAI chat messages: every place text travels in them, the input untouched."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from openclone.store.redact.base import RedactionResult
from openclone.store.redact.redactor import default_redactor

__all__ = ["redact_messages"]


def redact_messages(
    messages: list[dict[str, Any]], redactor: Callable[[str], RedactionResult] | None = None
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Redacted copies of OpenAI chat messages and the summed counts; the input is untouched.

    Covers string content, text parts of list content, tool-call and legacy function-call
    arguments (JSON text; placeholders keep it valid JSON). Other fields are shared with the
    input, not copied: only what is redacted is rebuilt (this runs on every capture).
    """
    red = redactor or default_redactor
    counts: dict[str, int] = {}

    def text(value: str) -> str:
        result = red(value)
        for kind, n in result.counts.items():
            counts[kind] = counts.get(kind, 0) + n
        return result.text

    def function(fn: Any) -> Any:
        if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
            return {**fn, "arguments": text(fn["arguments"])}
        return fn

    def message(msg: Any) -> Any:
        if not isinstance(msg, dict):
            return msg
        new = dict(msg)
        content = msg.get("content")
        if isinstance(content, str):
            new["content"] = text(content)
        elif isinstance(content, list):
            new["content"] = [
                {**part, "text": text(part["text"])}
                if isinstance(part, dict) and isinstance(part.get("text"), str)
                else part
                for part in content
            ]
        if isinstance(msg.get("tool_calls"), list):
            new["tool_calls"] = [
                {**call, "function": function(call["function"])}
                if isinstance(call, dict) and "function" in call
                else call
                for call in msg["tool_calls"]
            ]
        if "function_call" in msg:
            new["function_call"] = function(msg["function_call"])
        return new

    return [message(m) for m in messages], counts
