"""Applying a redactor to captured exchanges, and making text safe for both databases.

The detectors live in :mod:`openclone.store.redact`; this module only walks the OpenAI
request and response shapes (text, text parts, tool-call arguments, legacy prompts) and
adds up what was redacted. The redactor is imported when first needed, so the store opens
and erases even where redaction is configured away.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from openclone.errors import ConfigError

if TYPE_CHECKING:
    from openclone.store.redact import RedactionResult

__all__ = [
    "RedactorLike",
    "clean_json",
    "clean_text",
    "redact_exchange",
    "resolve_redactor",
]

# Anything that maps text to a RedactionResult: the built-in ``redact``, a
# ``redact.Redactor``, or a stronger detector of your own.
RedactorLike = Callable[[str], "RedactionResult"]


def resolve_redactor(spec: RedactorLike | str | None) -> RedactorLike:
    """A redactor, a ``"module:attr"`` naming one, or ``None``/``"default"`` for the built-in."""
    if callable(spec):
        return spec
    if spec in (None, "", "default"):
        try:
            from openclone.store.redact import redact
        except ImportError as exc:
            raise ConfigError(f"PII redaction is not available: {exc}") from exc
        return redact
    module, sep, attr = str(spec).partition(":")
    if not sep or not module or not attr:
        raise ConfigError(f"a redactor is named module:attr, not {spec!r}")
    try:
        found = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load the redactor {spec!r}: {exc}") from exc
    if not callable(found):
        raise ConfigError(f"the redactor {spec!r} is not callable")
    redactor: RedactorLike = found
    return redactor


class _Tally:
    def __init__(self, redactor: RedactorLike) -> None:
        self.redactor = redactor
        self.counts: dict[str, int] = {}

    def __call__(self, value: str) -> str:
        result = self.redactor(value)
        for kind, n in result.counts.items():
            self.counts[kind] = self.counts.get(kind, 0) + n
        return result.text

    def message(self, msg: Any) -> Any:
        if not isinstance(msg, dict):
            return msg
        new = dict(msg)
        content = msg.get("content")
        if isinstance(content, str):
            new["content"] = self(content)
        elif isinstance(content, list):
            new["content"] = [
                {**p, "text": self(p["text"])}
                if isinstance(p, dict) and isinstance(p.get("text"), str)
                else p
                for p in content
            ]
        if isinstance(msg.get("tool_calls"), list):
            new["tool_calls"] = [self._call(c) for c in msg["tool_calls"]]
        return new

    def _call(self, call: Any) -> Any:
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
            return {**call, "function": {**fn, "arguments": self(fn["arguments"])}}
        return call


def redact_exchange(
    request: dict[str, Any], response: dict[str, Any] | None, redactor: RedactorLike
) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, int]]:
    """Redacted copies of a captured request and response, and what was redacted."""
    tally = _Tally(redactor)
    request = dict(request)
    if isinstance(request.get("messages"), list):
        request["messages"] = [tally.message(m) for m in request["messages"]]
    if isinstance(request.get("prompt"), str):
        request["prompt"] = tally(request["prompt"])
    elif isinstance(request.get("prompt"), list):
        request["prompt"] = [tally(p) if isinstance(p, str) else p for p in request["prompt"]]
    if response is not None and isinstance(response.get("choices"), list):
        response = dict(response)
        choices = []
        for ch in response["choices"]:
            if isinstance(ch, dict):
                ch = dict(ch)
                if isinstance(ch.get("message"), dict):
                    ch["message"] = tally.message(ch["message"])
                if isinstance(ch.get("text"), str):
                    ch["text"] = tally(ch["text"])
            choices.append(ch)
        response["choices"] = choices
    return request, response, tally.counts


def clean_text(value: str) -> str:
    """Text both databases accept: PostgreSQL refuses NUL, and neither can encode a lone
    surrogate (which a client's JSON may legally carry as ``\\ud800``)."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def clean_json(value: Any) -> Any:
    """``value`` with every string made safe by :func:`clean_text` (PostgreSQL checks the
    surrogate escapes inside JSON too)."""
    # Nearly every capture is clean already; one C-speed dump proves it at a fraction of
    # the cost of walking the structure in Python.
    try:
        dumped = json.dumps(value, ensure_ascii=False)
        if "\\u0000" not in dumped:
            dumped.encode("utf-8")  # a lone surrogate raises here
            return value
    except (TypeError, ValueError):  # UnicodeEncodeError is a ValueError
        pass
    return _clean_json(value)


def _clean_json(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(str(k)): _clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_json(v) for v in value]
    return value
