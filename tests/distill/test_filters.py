"""Each filter drops for its own reason; the bundled seeds pass them all."""

from __future__ import annotations

import pytest

from openclone.distill import Reason, Task, load_seeds
from openclone.distill.filters import AnswerFilter, InstructionFilter
from openclone.distill.teacher import Reply


@pytest.mark.parametrize(
    ("instruction", "reason"),
    [
        ("Hello there.", Reason.TOO_SHORT),
        (" ".join(["word"] * 151), Reason.TOO_LONG),
        ("- Write a poem about autumn.", Reason.BAD_START),
        ("¿Puedes escribir un poema sobre el otoño?", Reason.BAD_START),
        ("Draw a cat sitting on a fence.", Reason.NOT_TEXT),
        ("Describe the image in a few words.", Reason.NOT_TEXT),
        ("Go to the website and summarise it.", Reason.NOT_TEXT),
        ("Create a flowchart of the hiring process.", Reason.NOT_TEXT),
        ("I'm sorry, but I cannot come up with a task.", Reason.REFUSAL),
        ("As an AI, I do not have personal tasks.", Reason.REFUSAL),
        (
            "Write a short e-mail to a client apologising that their order will arrive two days late.",
            Reason.NEAR_DUPLICATE,
        ),
    ],
)
def test_each_reason(instruction: str, reason: Reason) -> None:
    seeds = [t.instruction for t in load_seeds().tasks]
    assert InstructionFilter(0.7, seeds).check(Task(instruction)) is reason


def test_forbidden_words_match_whole_words_only() -> None:
    f = InstructionFilter()
    assert f.check(Task("Explain the roadmap for our mobile app launch.")) is None  # "map"
    assert f.check(Task("Profile the slowest SQL queries in our reporting job.")) is None  # "file"
    assert f.check(Task("Which graphic designers influenced modern logos?")) is None  # "graph"
    assert f.check(Task("Summarise the plot of Hamlet in three sentences.")) is Reason.NOT_TEXT


def test_near_duplicates_are_checked_against_kept_ones_too() -> None:
    f = InstructionFilter(0.7)
    assert f.check(Task("List five tips for a good night's sleep.")) is None
    assert f.check(Task("List five tips for a good night of sleep.")) is Reason.NEAR_DUPLICATE
    assert f.check(Task("List five tips for a good night's sleep.")) is Reason.NEAR_DUPLICATE
    assert f.check(Task("Explain why leaves change colour in autumn.")) is None


def test_bundled_seeds_are_varied_and_pass_the_instruction_filters() -> None:
    seeds = load_seeds()
    assert 90 <= len(seeds.tasks) <= 120 and seeds.source == "bundled"
    assert all(t.output.strip() for t in seeds.tasks)  # each has an example answer
    assert sum(bool(t.input) for t in seeds.tasks) >= 30  # many work on an input
    f = InstructionFilter(0.7)
    assert [t.instruction for t in seeds.tasks if f.check(t) is not None] == []


def test_answer_filter_reasons() -> None:
    a = AnswerFilter()
    prompt, instruction = (
        "Name a fruit that is yellow.\n\nInput text",
        "Name a fruit that is yellow.",
    )
    ok = Reply("A banana is yellow when ripe.", "stop")
    assert a.check(ok, prompt, instruction) is None
    assert a.check(Reply("  \n", "stop"), prompt) is Reason.EMPTY_ANSWER
    assert (
        a.check(Reply("Name a fruit that is yellow", "stop"), prompt, instruction)
        is Reason.ECHOED_ANSWER
    )
    assert (
        a.check(Reply("name a fruit that is yellow. Sure!", "stop"), prompt, instruction)
        is Reason.ECHOED_ANSWER
    )
    assert a.check(Reply(prompt, "stop"), prompt, instruction) is Reason.ECHOED_ANSWER
    assert (
        a.check(Reply("I'm sorry, but I can't help with that.", "stop"), prompt)
        is Reason.REFUSED_ANSWER
    )
    assert a.check(Reply("", "stop", refusal="no"), prompt) is Reason.REFUSED_ANSWER
    assert a.check(Reply("A banana is yellow when", "length"), prompt) is Reason.ANSWER_TRUNCATED
    assert AnswerFilter(keep_truncated=True).check(Reply("A banana is", "length"), prompt) is None
    # An answer that resembles the input (a rewrite task) is not an echo.
    fix = "Fix the spelling.\n\nThe cat sat on teh mat."
    assert a.check(Reply("The cat sat on the mat.", "stop"), fix, "Fix the spelling.") is None
