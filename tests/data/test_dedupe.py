"""The fast filter decides exactly as Alpaca's rouge_score loop does, decision for decision."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rouge_score import rouge_scorer, scoring
from typer.testing import CliRunner

from openclone.cli.data import data_app
from openclone.data import NearDuplicateFilter, dedupe, lcs_length, rouge_l, tokenize

SHAREGPT = Path(__file__).resolve().parents[3] / "shared" / "data" / "sharegpt_prompts.jsonl"
SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
THRESHOLDS = [0.0, 0.3, 0.5, 0.6, 2 / 3, 0.7, 0.75, 0.8, 0.9, 1.0]


def alpaca(texts: list[str], threshold: float) -> list[bool]:
    """The reference: Alpaca's generate_instruction.py loop, minus the process pool."""
    kept_tokens: list[list[str]] = []
    decisions = []
    for text in texts:
        tokens = SCORER._tokenizer.tokenize(text)
        scores = [rouge_scorer._score_lcs(tokens, kept).fmeasure for kept in kept_tokens]
        if scores and max(scores) > threshold:
            decisions.append(False)
        else:
            decisions.append(True)
            kept_tokens.append(tokens)
    return decisions


def dp_lcs(a: list[str], b: list[str]) -> int:
    return int(rouge_scorer._lcs_table(a, b)[-1][-1]) if a and b else 0


# Words that stress the tokenizer: case, punctuation inside words, digits, scripts it
# drops, and characters whose lowercase is ASCII ("İ" → "i̇", Kelvin sign → "k").
WORDS = st.sampled_from(
    [
        "a",
        "b",
        "c",
        "the",
        "cat",
        "Cat",
        "CAT!",
        "x1",
        "1",
        "a-b",
        "don't",
        "日本",
        "é",
        "İ",
        "\u212a",
        "ß",
        "😀",
        "Ⅻ",
        "\uff41",
    ]
)
SEPARATORS = st.sampled_from([" ", ", ", "\n", "\t", "—", "...", ""])
TEXTS = st.lists(
    st.tuples(st.lists(WORDS, max_size=9), SEPARATORS).map(lambda ws: ws[1].join(ws[0])),
    max_size=25,
)
THRESHOLD = st.one_of(st.sampled_from(THRESHOLDS), st.floats(0.0, 1.0))


@given(st.text())
def test_tokenizer_is_rouge_scores(text: str) -> None:
    assert tokenize(text) == SCORER._tokenizer.tokenize(text)


def test_tokenizer_keeps_only_ascii_letters_and_digits() -> None:
    assert tokenize("Héllo, WORLD-42! 日本語 \uff46\uff55\uff4c\uff4c") == [
        "h",
        "llo",
        "world",
        "42",
    ]
    assert tokenize("İstanbul \u212aelvin") == ["i", "stanbul", "kelvin"]  # lower() first
    assert tokenize("你好\uff0c世界 😀") == []


@given(
    st.lists(st.sampled_from("abcd"), max_size=30), st.lists(st.sampled_from("abcd"), max_size=30)
)
def test_rouge_l_equals_rouge_score(a: list[str], b: list[str]) -> None:
    assert lcs_length(a, b) == dp_lcs(a, b)
    assert rouge_l(a, b) == rouge_scorer._score_lcs(a, b).fmeasure
    assert rouge_l(a, b) == rouge_l(b, a)  # so argument order cannot change a decision


@pytest.mark.parametrize("threshold", [*THRESHOLDS, 0.1, 0.35, 0.95])
def test_least_lcs_matches_the_float_formula(threshold: float) -> None:
    # need(m, n) stands in for comparing F: LCS >= need exactly when rouge_score's F > t.
    f = NearDuplicateFilter(threshold)
    for m in range(1, 45):
        for n in range(1, 45):
            need = f.need(m, n)
            for lcs in range(1, min(m, n) + 1):
                exceeds = scoring.fmeasure(lcs / n, lcs / m) > threshold
                assert (lcs >= need) == exceeds, (m, n, lcs)


@settings(max_examples=300, deadline=None)
@given(TEXTS, THRESHOLD)
def test_decisions_match_alpaca_on_random_texts(texts: list[str], threshold: float) -> None:
    expected = alpaca(texts, threshold)
    assert dedupe(texts, threshold) == expected
    incremental = NearDuplicateFilter(threshold)  # no vocabulary: first-seen token order
    assert [incremental.add(text) for text in texts] == expected
    assert (incremental.kept, incremental.dropped) == (sum(expected), len(texts) - sum(expected))


def boundary_pair(m: int, n: int, common: list[int]) -> list[str]:
    """Two rows of m and n distinct tokens sharing exactly the tokens at `common` (in x),
    in order, at the end of y: their LCS is len(common)."""
    x = [f"w{i}" for i in range(m)]
    y = [f"v{i}" for i in range(n - len(common))] + [x[i] for i in common]
    return [" ".join(x), " ".join(y)]


def test_f_exactly_at_the_threshold_is_decided_like_rouge_score() -> None:
    # Where 2·LCS/(m+n) equals the threshold, rouge_score's float F lands a hair above or
    # below it (m=5, n=11, LCS=4 at 0.5 gives 0.5000000000000001: dropped). Also probe
    # the neighbouring floats.
    above = 0
    for threshold in [0.5, 0.6, 0.7, 0.75, 0.8, 0.9]:
        exact = Fraction(threshold).limit_denominator(100)
        for m in range(1, 40):
            for n in range(1, 40):
                for lcs in range(1, min(m, n) + 1):
                    if Fraction(2 * lcs, m + n) != exact:
                        continue
                    texts = boundary_pair(m, n, list(range(lcs)))
                    for t in (
                        math.nextafter(threshold, 0),
                        threshold,
                        math.nextafter(threshold, 1),
                    ):
                        assert dedupe(texts, t) == alpaca(texts, t), (t, m, n, lcs)
                    above += alpaca(texts, threshold) == [True, False]
    assert above > 0  # the float effect really is exercised


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.sampled_from([0.5, 0.6, 0.7, 0.75, 0.8]))
def test_engineered_pairs_around_the_threshold(data: st.DataObject, threshold: float) -> None:
    m = data.draw(st.integers(1, 60))
    n = data.draw(st.integers(1, 60))
    need = NearDuplicateFilter(threshold).need(m, n)
    # An LCS just below, at, or just above the least that exceeds, at random positions,
    # with a repeated-token row and an exact repeat after them.
    lcs = max(0, min(m, n, need + data.draw(st.integers(-1, 1))))
    common = sorted(data.draw(st.permutations(range(m)))[:lcs])
    texts = [*boundary_pair(m, n, common), "w0 w0 w0 w1", "w0 w0 w1 w1", "W0-w0 w0 w1"]
    assert dedupe(texts, threshold) == alpaca(texts, threshold)


def test_rows_without_tokens_are_kept_and_repeats_dropped() -> None:
    texts = ["", "日本語のテキスト", "!!!", "continue", "Continue!", "continue", "go on", "¿qué?"]
    assert dedupe(texts) == [True, True, True, True, False, False, True, True]
    assert dedupe(texts) == alpaca(texts, 0.7)
    assert dedupe(texts, 1.0) == [True] * len(texts)  # F never exceeds 1


def test_threshold_outside_zero_to_one_is_refused() -> None:
    for bad in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match="threshold"):
            NearDuplicateFilter(bad)


def test_progress_is_reported_to_the_end() -> None:
    seen: list[int] = []
    dedupe(["a b c"] * 2500, 0.7, seen.append)
    assert seen == [1000, 2000, 2500]


@pytest.mark.skipif(not SHAREGPT.exists(), reason="shared ShareGPT prompts not present")
def test_real_prompts_and_their_near_copies_match_alpaca() -> None:
    with SHAREGPT.open(encoding="utf-8") as f:
        prompts = [json.loads(line)["instruction"] for _, line in zip(range(400), f, strict=False)]
    prompts = [p for p in prompts if len(p) < 400][:70]
    # Real messy prompts, then edited copies of them: a word dropped, case and
    # punctuation changed, a word added, so that drops on real text are exercised.
    variants = []
    for i, prompt in enumerate(prompts[:50]):
        words = prompt.split()
        edits = [words[1:], [w.upper() for w in words], [*words, "please"], words[::-1]]
        variants.append(" ".join(edits[i % len(edits)]) + "?")
    texts = prompts + variants
    expected = alpaca(texts, 0.7)
    assert dedupe(texts, 0.7) == expected
    assert 0 < expected.count(False) < len(variants)


# The command, mounted as the lead mounts it: `openclone data dedupe`.
runner = CliRunner()
app = typer.Typer()
app.add_typer(data_app, name="data")


def test_command_writes_kept_rows_and_prints_the_summary(tmp_path: Path) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    rows = ["Write a poem about the sea.", "Write a poem about the sea!", "Name three colours."]
    src.write_text("".join(json.dumps({"instruction": r, "output": ""}) + "\n" for r in rows))
    result = runner.invoke(app, ["data", "dedupe", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["instruction"] for line in out.read_text().splitlines()] == [
        rows[0],
        rows[2],
    ]
    assert "3" in result.output and "2" in result.output and "1" in result.output


def test_command_reports_bad_input_and_threshold(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"prompt": "hi"}\n')
    result = runner.invoke(app, ["data", "dedupe", str(src), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "line 1" in result.output and "instruction" in result.output
    result = runner.invoke(
        app, ["data", "dedupe", str(src), "--out", str(tmp_path / "o"), "--field", "prompt"]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["data", "dedupe", str(src), "--out", str(tmp_path / "o"), "--threshold", "1.5"]
    )
    assert result.exit_code == 2
    missing = runner.invoke(app, ["data", "dedupe", str(tmp_path / "no"), "--out", "x"])
    assert missing.exit_code == 2 and "cannot read" in missing.output
