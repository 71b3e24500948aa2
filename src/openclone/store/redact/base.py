"""The redaction types: a result, the redactor contract, and a detector of one kind of PII."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Detector", "Gate", "RedactionResult", "Redactor", "Span"]

Span = tuple[int, int]
Gate = Callable[[str], bool]


@dataclass(frozen=True)
class RedactionResult:
    text: str
    counts: dict[str, int] = field(default_factory=dict)  # kind -> how many were replaced


class Redactor(Protocol):
    """Anything that turns text into redacted text and a count per kind."""

    def __call__(self, text: str) -> RedactionResult: ...


def _whole(m: re.Match[str]) -> Span | None:
    return m.span()


@dataclass(frozen=True)
class Detector:
    """One kind of PII: ``pattern`` finds candidates, ``find`` picks the span to replace.

    ``find`` returns ``None`` to leave a candidate alone; the search then resumes one
    character after the candidate's start, so ``pattern`` must not match inside a token.
    A pattern that opens with a character (not a lookbehind or ``\\b``) lets ``re`` skip
    ahead to it, several times faster, hence the ``\\d(?<!…\\d)`` idiom of the default
    detectors. ``gate`` is a cheap test (or a tuple of them, tried in order) without which
    the detector cannot replace anything; the pass is skipped when one fails. A gate may be
    stricter than the pattern when the check (``find``) turns away what it lets through.
    """

    kind: str  # the placeholder is f"[{kind}]"
    pattern: re.Pattern[str]
    find: Callable[[re.Match[str]], Span | None] = _whole
    gate: Gate | tuple[Gate, ...] | None = None
