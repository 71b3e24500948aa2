"""The default redactor as it was before its gates were tightened, kept to prove the faster
one byte-identical: the same patterns and checks, each detector behind its old gate (a
digit anywhere; the old needles), one gate answer per text until the text changes."""

from __future__ import annotations

import re
from collections.abc import Callable

from openclone.store.redact import DEFAULT_DETECTORS, RedactionResult
from openclone.store.redact.redactor import _apply

_DIGIT = re.compile(r"\d")
_KEYWORDS = ("pass", "pwd", "secret", "token", "key", "authorization")


def _has_digit(text: str) -> bool:
    return _DIGIT.search(text) is not None


def _contains(*needles: str) -> Callable[[str], bool]:
    def gate(text: str) -> bool:
        return any(n in text for n in needles)

    return gate


_OLD_GATES: dict[int, Callable[[str], bool]] = {
    0: _contains("-----BEGIN "),
    1: _contains("-----BEGIN "),
    2: _contains("eyJ"),
    3: _contains(
        *("sk-", "k_live_", "k_test_", "AKIA", "ASIA", "github_pat_", "xox", "AIza"),
        *(f"h{c}_" for c in "pousr"),
    ),
    4: _contains("://"),
    # Fixed in both since (it missed "pAssword=" and a Kelvin-sign "toKen"): any case.
    5: lambda text: any(k in text.lower() for k in _KEYWORDS),
    6: _contains("Bearer"),
    7: _contains("@"),
    **dict.fromkeys(range(8, 14), _has_digit),  # IBAN, four national ids, card
    14: _contains(":"),  # IPv6
    15: _has_digit,  # IPv4
    16: _has_digit,  # phone
}


def reference_redact(text: str) -> RedactionResult:
    assert len(DEFAULT_DETECTORS) == len(_OLD_GATES)
    counts: dict[str, int] = {}
    answers: dict[Callable[[str], bool], bool] = {}
    for i, det in enumerate(DEFAULT_DETECTORS):
        gate = _OLD_GATES[i]
        ok = answers.get(gate)
        if ok is None:
            ok = answers[gate] = gate(text)
        if not ok:
            continue
        out = _apply(det, text, counts)
        if out is not text:
            text = out
            answers.clear()
    return RedactionResult(text, counts)
