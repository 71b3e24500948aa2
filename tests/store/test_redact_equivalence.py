"""The default redactor skips passes by its gates only where they cannot change the text:
its output is byte-identical to the redactor before the gates were tightened
(``redact_reference``), on real prompts and on texts made to sit at the gates' edges."""

from __future__ import annotations

import heapq
import json
import re
from pathlib import Path

import pytest

from openclone.store.redact import redact
from store.redact_reference import reference_redact
from store.test_redact import FOUND, KEPT

SHAREGPT = Path(__file__).resolve().parents[3] / "shared" / "data" / "sharegpt_prompts.jsonl"
# What the digit, assignment, IBAN and NI gates look for: the rows richest in it.
_BUSY = re.compile(r"[\d@:=]")

EDGES = [
    "pAssWord=hunter2x and Api_Key: zz9zz9zz9",  # keyword case the old gate never let through
    "PASSWORD=abc123 token: 'ey123abc'",
    "password hunter2",  # a keyword with no ":" or "="
    "+1 2 3 4 5 6 7 and (5) 1 2 3 4 5 6 and 1 2 3 4 5 6 7 8",  # one-digit groups
    "+1 (2) 34 56 78 90, tel 1 (2) 3 45 67 89",
    "hosts 1.2.3.4, 9.9.9.9 and 10.0.0.1 and 8.8.8.88",
    "GB82WEST12345698765432 and GB82 WEST 1234 5698 7654 32 and gb82west1234",
    "JG103782A, JG 10 37 82 A, J G 10 37 82 A, JG10 37 82A",
    "DNI 12345678Z, NIE X1234567L, X-1234567L",
    "SSN 123-45-6789 and 1 2-34-5678",
    "1 85 05 78 006 084 91 and 185057800608491",
    "4111 1111 1111 1111, 4111-1111-1111-1111, 4 1 1 1",
    "mail ana@example.com at +44 20 7946 0958, password: s3cr3t!",
    "\\n123-45-6789\\n and \\nJG103782A",
    "x" * 300 + " 07 946 0958",
    "",
]


def test_edge_cases_and_the_redaction_tests_are_unchanged() -> None:
    for text in [*EDGES, *(t for t, _ in FOUND), *KEPT]:
        assert redact(text) == reference_redact(text), text


@pytest.mark.skipif(not SHAREGPT.exists(), reason="the shared ShareGPT prompts are not here")
def test_the_busiest_real_prompts_are_unchanged() -> None:
    with SHAREGPT.open(encoding="utf-8") as f:
        texts = [json.loads(line).get("instruction", "") for line in f if line.strip()]
    busiest = heapq.nlargest(2000, texts, key=lambda t: len(_BUSY.findall(t)))
    changed = [t[:80] for t in busiest if redact(t) != reference_redact(t)]
    assert changed == []
    # the sample exercises the detectors, not only the gates
    assert sum(bool(redact(t).counts) for t in busiest) > 50
