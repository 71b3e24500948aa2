"""PII redaction: typed placeholders (``[EMAIL]``, ``[CARD]``, …) and a count of what went.

Detectors run in a fixed order, each over the text the earlier ones left: secrets first
(a key may contain digit runs that look like a phone number), then e-mail, IBAN and card
numbers (checksummed, so an order number is left alone), national ids, IP addresses and
phone numbers last (the loosest pattern). Placeholders contain no digits or ``@``, so
redacting twice changes nothing. The default is regular expressions; a stronger detector
(Presidio, an NER model) plugs in through :func:`load_redactor` as ``module:attr``.
"""

from __future__ import annotations

import importlib
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from openclone.errors import ConfigError

__all__ = [
    "Detector",
    "RedactionResult",
    "Redactor",
    "RegexRedactor",
    "load_redactor",
    "redact",
    "redact_messages",
]


@dataclass(frozen=True)
class RedactionResult:
    text: str
    counts: dict[str, int] = field(default_factory=dict)


class Redactor(Protocol):
    def __call__(self, text: str) -> RedactionResult: ...


@dataclass(frozen=True)
class Detector:
    kind: str  # the placeholder is f"[{kind}]"
    pattern: re.Pattern[str]
    valid: Callable[[re.Match[str]], bool] = lambda m: True
    group: int = 0  # the part of the match that is replaced (0: all of it)


def _luhn(m: re.Match[str]) -> bool:
    digits = [int(c) for c in m.group(0) if c.isdigit()]
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _iban(m: re.Match[str]) -> bool:
    s = re.sub(r"\s", "", m.group(0)).upper()
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _ip(m: re.Match[str]) -> bool:
    try:
        ipaddress.ip_address(m.group(0))
    except ValueError:
        return False
    return True


def _ssn(m: re.Match[str]) -> bool:
    area, group, serial = m.group(1), m.group(2), m.group(3)
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


_DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")


def _phone(m: re.Match[str]) -> bool:
    if _DATE.fullmatch(m.group(0)):
        return False
    digits = sum(c.isdigit() for c in m.group(0))
    # An international prefix or separators make it a phone number; a bare run of digits
    # is more often an order number or an amount.
    return 7 <= digits <= 15 and (m.group(0).startswith("+") or not m.group(0).isdigit())


_B = r"(?<![\w@.+-])"  # not inside a longer token
_E = r"(?![\w@])"

DEFAULT_DETECTORS: tuple[Detector, ...] = (
    Detector(
        "SECRET",
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"),
    ),
    Detector(
        "SECRET",
        re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),  # JWT
    ),
    Detector(
        "SECRET",
        re.compile(
            r"\b(?:sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"  # OpenAI, Anthropic
            r"|AKIA[0-9A-Z]{16}"  # AWS access key id
            r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}"  # GitHub
            r"|xox[abprs]-[A-Za-z0-9-]{10,}"  # Slack
            r"|AIza[0-9A-Za-z_-]{35})"  # Google
        ),
    ),
    Detector(
        "SECRET",
        re.compile(
            r"(?i)\b(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|token|"
            r"client[_-]?secret)\b[\"']?\s*[:=]\s*[\"']?([^\s\"',;]{4,})"
        ),
        group=1,
    ),
    Detector(
        "EMAIL",
        re.compile(
            r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}\b"
        ),
    ),
    Detector(
        "IBAN",
        re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"),
        _iban,
    ),
    Detector("CARD", re.compile(_B + r"\d(?:[ -]?\d){12,18}" + _E), _luhn),
    Detector("NATIONAL_ID", re.compile(_B + r"(\d{3})-(\d{2})-(\d{4})" + _E), _ssn),  # US SSN
    Detector(
        "NATIONAL_ID",  # UK National Insurance number
        re.compile(
            r"\b(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"
        ),
    ),
    Detector(
        "NATIONAL_ID",  # French INSEE / social security number (15 digits, sex digit first)
        re.compile(_B + r"[12] ?\d{2} ?(?:0[1-9]|1[0-2]) ?\d{2} ?\d{3} ?\d{3} ?\d{2}" + _E),
    ),
    Detector(
        "IP",
        re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]*\d)"),
        _ip,
    ),
    Detector(
        "IP",  # IPv6: any hex-and-colon run with two colons, then the stdlib decides
        re.compile(r"(?<![\w:])(?=[0-9A-Fa-f]*:[0-9A-Fa-f]*:)[0-9A-Fa-f:]{2,39}(?![\w:])"),
        _ip,
    ),
    Detector(
        "PHONE",
        re.compile(
            _B
            + r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,4}"
            + _E
            + r"|"
            + _B
            + r"\+\d{7,15}"
            + _E
        ),
        _phone,
    ),
)


class RegexRedactor:
    """The default redactor: each detector's matches become ``[KIND]``."""

    def __init__(self, detectors: tuple[Detector, ...] = DEFAULT_DETECTORS) -> None:
        self.detectors = detectors

    def __call__(self, text: str) -> RedactionResult:
        counts: dict[str, int] = {}
        for det in self.detectors:
            if det.kind == "EMAIL" and "@" not in text:
                continue
            text = det.pattern.sub(lambda m, d=det: _replace(m, d, counts), text)  # type: ignore[misc]
        return RedactionResult(text, counts)


def _replace(m: re.Match[str], det: Detector, counts: dict[str, int]) -> str:
    if not det.valid(m):
        return m.group(0)
    counts[det.kind] = counts.get(det.kind, 0) + 1
    if det.group:
        start, end = m.span(det.group)
        base = m.start()
        whole = m.group(0)
        return whole[: start - base] + f"[{det.kind}]" + whole[end - base :]
    return f"[{det.kind}]"


_default = RegexRedactor()


def redact(text: str) -> RedactionResult:
    return _default(text)


def load_redactor(spec: str | None) -> Redactor:
    """``None`` or ``"default"``: the regex redactor; ``"module:attr"``: yours."""
    if spec in (None, "", "default"):
        return _default
    module, _, attr = (spec or "").partition(":")
    try:
        found = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"cannot load the redactor {spec!r}: {exc}") from exc
    if not callable(found):
        raise ConfigError(f"the redactor {spec!r} is not callable")
    redactor: Redactor = found
    return redactor


def _merge(into: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0) + v


def redact_messages(
    messages: list[dict[str, Any]], redactor: Redactor | None = None
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Redacted copies of OpenAI chat messages (text, text parts, tool-call arguments)."""
    red = redactor or _default
    counts: dict[str, int] = {}

    def text(value: str) -> str:
        result = red(value)
        _merge(counts, result.counts)
        return result.text

    out = []
    for msg in messages:
        new = dict(msg)
        content = msg.get("content")
        if isinstance(content, str):
            new["content"] = text(content)
        elif isinstance(content, list):
            new["content"] = [
                {**p, "text": text(p["text"])}
                if isinstance(p, dict) and isinstance(p.get("text"), str)
                else p
                for p in content
            ]
        if isinstance(msg.get("tool_calls"), list):
            calls = []
            for call in msg["tool_calls"]:
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                    call = {**call, "function": {**fn, "arguments": text(fn["arguments"])}}
                calls.append(call)
            new["tool_calls"] = calls
        out.append(new)
    return out, counts
