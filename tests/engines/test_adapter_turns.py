"""Adapters take turns on the llama.cpp engine: each gets ``adapter_turn`` steps in name order
(the base first), a finished group hands the turn on, and no adapter in use waits forever."""

from __future__ import annotations

from openclone.engines.llamacpp import next_turn


def _run(schedule: list[set[str | None]], steps: int) -> list[str | None]:
    """Whose group decodes at each step, given the adapters in use at each step."""
    turn: tuple[str | None, int] = (None, 0)
    out = []
    for in_use in schedule:
        turn = next_turn(in_use, turn, steps)
        out.append(turn[0])
    return out


def test_adapters_take_turns_of_the_configured_steps_in_name_order() -> None:
    assert _run([{None, "b", "a"}] * 7, steps=2) == [None, None, "a", "a", "b", "b", None]


def test_a_group_that_finishes_hands_its_turn_to_the_next() -> None:
    # "a" ends after one step of its turn: "b" goes next, not "a" again or the base.
    assert _run([{"a", "b", "c"}, {"b", "c"}, {"b", "c"}, {"b", "c"}], steps=3) == [
        "a", "b", "b", "b"]  # fmt: skip


def test_an_adapter_that_arrives_waits_at_most_one_round() -> None:
    in_use: set[str | None] = {"x", "y"}
    schedule = [in_use] * 3 + [in_use | {"m"}] * 8
    got = _run(schedule, steps=2)
    assert "m" in got[3:]
    assert got.index("m") - 3 <= 2 * 2  # one turn of each adapter already in use, at most


def test_a_turn_does_not_outlast_its_steps_while_new_work_keeps_coming() -> None:
    got = _run([{"a", "b"}] * 9, steps=4)
    assert got == ["a"] * 4 + ["b"] * 4 + ["a"]
