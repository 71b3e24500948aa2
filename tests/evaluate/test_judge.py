"""The judge's verdict parser on well-formed and malformed replies, and the swap rule."""

from __future__ import annotations

import pytest

from openclone.evaluate.judge import combine, judge_messages, parse_verdict


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("Answer A is correct and B is not.\nVERDICT: A", "A"),
        ("verdict: b", "B"),
        ("VERDICT: TIE", "TIE"),
        ("Both are fine.\n\n**VERDICT:** **A**", "A"),
        ("**Verdict: B**", "B"),
        ("## Verdict\nVERDICT: [[B]]", "B"),
        ("Final verdict - tie.", "TIE"),
        ("My verdict: a tie", "TIE"),  # "a tie" is not answer A
        ("VERDICT: A\n\nI hope this helps! Let me know if you have questions.", "A"),
        ("[[A]]", "A"),
        ("After comparing them: [[C]]", "TIE"),
        ("Answer A is better.", "A"),
        ("Overall, response B is clearly better than A.", "B"),
        ("I prefer answer B.", "B"),
        ("Both answers are equally helpful.", "TIE"),
        ("The second one is longer.\nB", "B"),
        ("VERDICT:   a  ", "A"),
    ],
)
def test_parses_verdicts(reply: str, verdict: str) -> None:
    assert parse_verdict(reply) == verdict


@pytest.mark.parametrize(
    "reply",
    [
        None,
        "",
        "   \n  ",
        "I cannot decide.",
        "VERDICT: A\nVERDICT: B",  # changed its mind
        "VERDICT: A, VERDICT: B or VERDICT: TIE",  # echoed the instructions
        "Answer A is better at tone, but B is better at accuracy.",
        "B is not better.",
        "VERDICT: maybe",
        "[[D]]",
        "VERDICT",
        "The answers are Alpha and Beta.",
    ],
)
def test_malformed_or_conflicting_verdicts_are_unparsed(reply: str | None) -> None:
    assert parse_verdict(reply) is None


def test_combine_keeps_consistent_wins_and_ties_the_rest() -> None:
    # first: candidate shown as A; swapped: candidate shown as B.
    assert combine("A", "B") == 1.0  # the candidate won in both positions
    assert combine("B", "A") == 0.0
    assert combine("TIE", "TIE") == 0.5
    assert combine("A", "A") == 0.5  # position bias: the first answer always wins
    assert combine("A", "TIE") == 0.5
    assert combine(None, "B") is None
    assert combine("A", None) is None


def test_judge_messages_show_both_answers_in_the_given_order() -> None:
    system, user = judge_messages("Q?", "first answer", "second answer")
    assert system.role == "system" and "VERDICT: TIE" in system.text()
    text = user.text()
    assert text.index("first answer") < text.index("second answer")
    assert "<answer_a>\nfirst answer\n</answer_a>" in text
