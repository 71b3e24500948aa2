"""Stop sequences across token boundaries and UTF-8 split across tokens."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from openclone.engines.textstream import StopAwareText


def feed(pieces: list[bytes], stops: list[str]) -> tuple[str, bool]:
    t = StopAwareText(stops)
    out = "".join(t.push(p) for p in pieces)
    return out + t.flush(), t.stopped


def test_stop_spanning_tokens_is_cut() -> None:
    assert feed([b"Hello ", b"wor", b"ld and more"], ["world"]) == ("Hello ", True)


def test_partial_stop_that_does_not_complete_is_released() -> None:
    assert feed([b"an ap", b"ple"], ["apricot"]) == ("an apple", False)


def test_earliest_stop_wins() -> None:
    assert feed([b"one two three"], ["three", "two"]) == ("one ", True)


def test_multibyte_character_split_across_tokens() -> None:
    e = "é".encode()
    assert feed([b"caf", e[:1], e[1:], b"!"], []) == ("café!", False)


def test_nothing_after_stop() -> None:
    t = StopAwareText(["END"])
    assert t.push(b"aEND") == "a"
    assert t.push(b"more") == ""
    assert t.flush() == ""


@given(
    st.text(max_size=40), st.lists(st.integers(1, 5), max_size=20), st.text(min_size=1, max_size=4)
)
def test_matches_cutting_the_whole_string(text: str, cuts: list[int], stop: str) -> None:
    data = text.encode()
    pieces, i = [], 0
    for c in cuts:
        pieces.append(data[i : i + c])
        i += c
    pieces.append(data[i:])
    out, stopped = feed(pieces, [stop])
    expected = text.split(stop, 1)[0] if stop in text else text
    assert out == expected
    assert stopped == (stop in text)
