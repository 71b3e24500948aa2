"""Applying a redactor to captured exchanges, and making text safe for both databases.

The detectors and the walk over chat messages live in :mod:`openclone.store.redact`; this
module applies them to a captured request and response (messages, legacy prompts, choices)
and adds up what was redacted. The redactor is imported when first needed, so the store opens
and erases even where redaction is configured away.
"""

from __future__ import annotations

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
    """A redactor, a ``"module:attr"`` naming one, or ``None``/``"default"`` for the built-in
    (see :func:`openclone.store.redact.load_redactor`)."""
    if callable(spec):
        return spec
    try:
        from openclone.store.redact import load_redactor
    except ImportError as exc:
        raise ConfigError(f"PII redaction is not available: {exc}") from exc
    return load_redactor(spec)


def redact_exchange(
    request: dict[str, Any], response: dict[str, Any] | None, redactor: RedactorLike
) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, int]]:
    """Redacted copies of a captured request and response, and what was redacted."""
    from openclone.store.redact import redact_messages

    counts: dict[str, int] = {}

    def tally(found: dict[str, int]) -> None:
        for kind, n in found.items():
            counts[kind] = counts.get(kind, 0) + n

    def messages(msgs: list[Any]) -> list[Any]:
        out, found = redact_messages(msgs, redactor)
        tally(found)
        return out

    def text(value: str) -> str:
        result = redactor(value)
        tally(result.counts)
        return result.text

    request = dict(request)
    if isinstance(request.get("messages"), list):
        request["messages"] = messages(request["messages"])
    if isinstance(request.get("prompt"), str):
        request["prompt"] = text(request["prompt"])
    elif isinstance(request.get("prompt"), list):
        request["prompt"] = [text(p) if isinstance(p, str) else p for p in request["prompt"]]
    # An embeddings request's texts (token arrays are numbers: nothing to find in them).
    if isinstance(request.get("input"), str):
        request["input"] = text(request["input"])
    elif isinstance(request.get("input"), list):
        request["input"] = [text(p) if isinstance(p, str) else p for p in request["input"]]
    if response is not None and isinstance(response.get("choices"), list):
        response = dict(response)
        choices = []
        for ch in response["choices"]:
            if isinstance(ch, dict):
                ch = dict(ch)
                if isinstance(ch.get("message"), dict):
                    ch["message"] = messages([ch["message"]])[0]
                if isinstance(ch.get("text"), str):
                    ch["text"] = text(ch["text"])
            choices.append(ch)
        response["choices"] = choices
    return request, response, counts


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
