"""The regex redactor: each detector's finds become ``[KIND]``, one detector after another."""

from __future__ import annotations

import re
from collections.abc import Iterable

from openclone.store.redact.base import Detector, Gate, RedactionResult
from openclone.store.redact.detectors import DEFAULT_DETECTORS

__all__ = ["RegexRedactor", "default_redactor", "redact"]


_PLACEHOLDER = re.compile(r"\[[A-Z_]+\]")


def _apply(det: Detector, text: str, counts: dict[str, int]) -> str:
    out: list[str] = []
    last = pos = 0
    while (m := det.pattern.search(text, pos)) is not None:
        span = det.find(m)
        if span is not None:
            # A span may start before its match (e-mail, IPv6) but never inside the last one.
            start, end = max(span[0], last), span[1]
            if end > start and not _PLACEHOLDER.fullmatch(text, start, end):
                out += (text[last:start], f"[{det.kind}]")
                last = pos = end
                counts[det.kind] = counts.get(det.kind, 0) + 1
                continue
        pos = m.start() + 1
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)


class RegexRedactor:
    """The default redactor: each detector's finds become ``[KIND]``, in the given order.

    Pass your own list to change what is looked for, e.g. keep IP addresses with
    ``RegexRedactor(d for d in DEFAULT_DETECTORS if d.kind != "IP")``.
    """

    def __init__(self, detectors: Iterable[Detector] = DEFAULT_DETECTORS) -> None:
        self.detectors = tuple(detectors)
        self._gated = tuple(
            (det, det.gate if isinstance(det.gate, tuple) else (det.gate,) if det.gate else ())
            for det in self.detectors
        )

    def __call__(self, text: str) -> RedactionResult:
        counts: dict[str, int] = {}
        # A gate's answer holds until a detector changes the text; most texts have no two
        # digits together, and one search tells the eight detectors that need them.
        answers: dict[Gate, bool] = {}
        for det, gates in self._gated:
            for gate in gates:
                ok = answers.get(gate)
                if ok is None:
                    ok = answers[gate] = gate(text)
                if not ok:
                    break
            else:
                out = _apply(det, text, counts)
                if out is not text:
                    text = out
                    answers.clear()
        return RedactionResult(text, counts)


default_redactor = RegexRedactor()


def redact(text: str) -> RedactionResult:
    """Redact ``text`` with the default detectors."""
    return default_redactor(text)
