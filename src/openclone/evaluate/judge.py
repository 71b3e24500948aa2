"""The pairwise judge: its prompt, a forgiving parser for its verdict, and the swap rule.

Every pair is judged twice, once with the candidate shown as answer A and once as answer
B. Judges favour one position (often the first); a verdict counts only when it survives the
swap: the same winner both times is a win, anything else a tie. A call whose verdict cannot
be read is *unparsed*; the pair then has no outcome (it is missing, never guessed), since
one order alone would keep the position bias the swap is there to cancel.

The judge ends its reply with ``VERDICT: A``, ``VERDICT: B`` or ``VERDICT: TIE``. With
``json_format`` it answers ``{"verdict": ..., "reason": ...}`` instead, enforced by the
judge's engine through ``response_format`` when it supports JSON schemas: that makes small
local judges, which often ramble past the verdict line, usable. The parser reads both.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from openclone.schema import ChatMessage, JSONSchemaFormat, ResponseFormat

__all__ = [
    "JUDGE_SYSTEM",
    "JUDGE_SYSTEM_JSON",
    "VERDICT_SCHEMA",
    "Verdict",
    "combine",
    "judge_messages",
    "parse_verdict",
    "score_of",
    "verdict_format",
]

Verdict = Literal["A", "B", "TIE"]

_CRITERIA = """\
You grade answers for OpenClone. You will see a user's prompt and two answers to it, \
labelled A and B. Decide which answer serves the user better: is it correct, does it do \
what was asked, is it clear and well organised? A longer answer is not better for being \
longer, and the order the answers are shown in means nothing. If neither is better, say \
it is a tie.
"""

JUDGE_SYSTEM = (
    _CRITERIA
    + """
Write at most three sentences of reasoning. Then end with a line on its own, exactly one of:
VERDICT: A
VERDICT: B
VERDICT: TIE"""
)

JUDGE_SYSTEM_JSON = (
    _CRITERIA
    + """
Reply with one JSON object and nothing else: {"verdict": "A" or "B" or "TIE", \
"reason": one short sentence}."""
)

# For judges whose engine enforces a JSON schema (llama.cpp grammars, vLLM, OpenAI):
# the verdict comes first, so a reply cut off by max_tokens still carries it.
VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"verdict": {"enum": ["A", "B", "TIE"]}, "reason": {"type": "string"}},
    "required": ["verdict", "reason"],
}

_TEMPLATE = """\
<prompt>
{prompt}
</prompt>

<answer_a>
{a}
</answer_a>

<answer_b>
{b}
</answer_b>

"""
_ASK = {
    False: "Which answer is better? Reason briefly, then finish with VERDICT: A, VERDICT: B or "
    "VERDICT: TIE on the last line.",
    True: 'Which answer is better? Reply with {"verdict": ..., "reason": ...}.',
}


def judge_messages(
    prompt: str, answer_a: str, answer_b: str, json_format: bool = False
) -> list[ChatMessage]:
    """The chat sent to the judge for one order of one pair (``json_format``: ask for
    :data:`VERDICT_SCHEMA` instead of the final verdict line)."""
    user = _TEMPLATE.format(prompt=prompt.strip(), a=answer_a.strip(), b=answer_b.strip())
    return [
        ChatMessage(role="system", content=JUDGE_SYSTEM_JSON if json_format else JUDGE_SYSTEM),
        ChatMessage(role="user", content=user + _ASK[json_format]),
    ]


def verdict_format() -> ResponseFormat:
    """The ``response_format`` that makes a judge's engine emit :data:`VERDICT_SCHEMA`."""
    return ResponseFormat(
        type="json_schema", json_schema=JSONSchemaFormat(name="verdict", schema=VERDICT_SCHEMA)
    )


# ---- parsing ---------------------------------------------------------------------------
# Tried in order; the first family with any match decides, and its matches must agree.
_LABEL = r"(?:answer|response|assistant|option|model)?\s*"
_CHOICE = r"(A|B|TIE|TIED|DRAW|EQUAL|NEITHER|BOTH)"
_FAMILIES = [
    # "VERDICT: A", "**Verdict:** [[B]]", "Final verdict - tie", "verdict is answer A",
    # and the JSON form {"verdict": "A"}
    re.compile(
        rf"\b(?:final\s+)?verdict\b[\"']?\s*(?:is\b)?\s*[:=\-\u2013\u2014]?\s*[\[\(\"'<]*\s*{_LABEL}{_CHOICE}\b",
        re.IGNORECASE,
    ),
    # MT-Bench's "[[A]]", "[[B]]", "[[C]]" (C is its tie)
    re.compile(r"\[\[\s*(A|B|C|TIE)\s*\]\]", re.IGNORECASE),
    # "Answer A is better", "B is clearly better", "I prefer answer B"
    re.compile(
        rf"\b{_LABEL}\b(A|B)\s+is\s+(?:(?!not\b|no\b)\w+\s+)?(?:better|superior|stronger|preferred)\b"
        rf"|\bprefer\s+{_LABEL}\b(A|B)\b",
        re.IGNORECASE,
    ),
    # "Both answers are equally good", "it's a tie"
    re.compile(
        r"\b(?:both\s+(?:answers\s+)?are\s+(?:equally|equal|the\s+same)|it\s*'?s\s+a\s+(tie))\b",
        re.IGNORECASE,
    ),
]
_TIES = {"TIE", "TIED", "DRAW", "EQUAL", "NEITHER", "BOTH", "C"}
_BARE = re.compile(r"^\W*(A|B|TIE)\W*$", re.IGNORECASE)


def _normalise(token: str | None) -> Verdict:
    word = (token or "TIE").upper()  # the tie phrases have no captured letter
    if word in _TIES:
        return "TIE"
    return "A" if word == "A" else "B"


def parse_verdict(text: str | None) -> Verdict | None:
    """The verdict in a judge's reply, or ``None`` when it is missing or contradicts itself."""
    if not text:
        return None
    plain = re.sub(r"[*_`#]", "", text)  # markdown emphasis and headings around the verdict
    plain = re.sub(r"\ban?\s+(tie|draw)\b", r"\1", plain, flags=re.IGNORECASE)  # "a tie" is no A
    for family in _FAMILIES:
        found = {
            _normalise(next((g for g in m.groups() if g), None)) for m in family.finditer(plain)
        }
        if found:
            return found.pop() if len(found) == 1 else None
    lines = [line for line in plain.splitlines() if line.strip()]
    bare = _BARE.match(lines[-1]) if lines else None
    return _normalise(bare.group(1)) if bare else None


def score_of(verdict: Verdict | None, candidate_is_a: bool) -> float | None:
    """The candidate's score for one judged order: 1 win, 0.5 tie, 0 loss."""
    if verdict is None:
        return None
    if verdict == "TIE":
        return 0.5
    return 1.0 if (verdict == "A") == candidate_is_a else 0.0


def combine(first: Verdict | None, swapped: Verdict | None) -> float | None:
    """The candidate's score for a pair: ``first`` had the candidate as A, ``swapped`` as B.

    The same winner in both orders is a win or loss; any disagreement is a tie; an
    unparsed verdict in either order leaves the pair without an outcome.
    """
    one, two = score_of(first, True), score_of(swapped, False)
    if one is None or two is None:
        return None
    return one if one == two else 0.5
