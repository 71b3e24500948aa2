"""Win rates, bootstrap intervals and length control on simulated judgements."""

from __future__ import annotations

import numpy as np
import pytest

from openclone.evaluate.stats import bootstrap_ci, lc_win_rate, win_rate


def test_win_rate_counts_ties_as_half_and_is_none_when_empty() -> None:
    assert win_rate([1, 0.5, 0, 1]) == pytest.approx(0.625)
    assert win_rate([]) is None
    assert bootstrap_ci([]) is None
    assert lc_win_rate([], [], []) is None


def test_bootstrap_ci_is_seeded_and_contains_the_estimate() -> None:
    scores = [1, 0, 0.5, 1, 1, 0, 1, 0.5]
    first = bootstrap_ci(scores, seed=3)
    assert first == bootstrap_ci(scores, seed=3)
    assert first is not None and first[0] <= np.mean(scores) <= first[1]
    assert bootstrap_ci([0.5] * 10) == (0.5, 0.5)


def test_bootstrap_ci_covers_the_true_win_rate_at_about_the_stated_rate() -> None:
    # 200 simulated evaluations of 80 prompts: P(win)=0.5, P(tie)=0.2, so the truth is 0.6.
    rng = np.random.default_rng(7)
    truth, covered, reps = 0.6, 0, 200
    for rep in range(reps):
        scores = rng.choice([1.0, 0.5, 0.0], size=80, p=[0.5, 0.2, 0.3])
        ci = bootstrap_ci(scores, resamples=1000, seed=rep)
        assert ci is not None
        covered += ci[0] <= truth <= ci[1]
    assert 0.88 <= covered / reps <= 0.99


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]


def _simulate(n: int, quality: float, length_effect: float, seed: int) -> Arrays:
    rng = np.random.default_rng(seed)
    ref_len = rng.integers(200, 800, n).astype(float)
    diff = rng.normal(250, 300, n)  # the candidate is wordier on average
    logit = quality + length_effect * np.tanh(diff / diff.std())
    wins = rng.random(n) < 1 / (1 + np.exp(-logit))
    return wins.astype(float), ref_len + diff, ref_len


def test_length_controlled_win_rate_removes_a_pure_length_bias() -> None:
    # Equal quality; the judge just likes length. Raw win rate is inflated, LC is not.
    scores, cand, ref = _simulate(3000, quality=0.0, length_effect=1.5, seed=1)
    raw = win_rate(scores)
    lc = lc_win_rate(scores, cand, ref)
    assert raw is not None and raw > 0.65
    assert lc == pytest.approx(0.5, abs=0.04)


def test_length_controlled_win_rate_keeps_a_real_quality_difference() -> None:
    scores, cand, ref = _simulate(3000, quality=1.0, length_effect=0.0, seed=2)
    lc = lc_win_rate(scores, cand, ref)
    assert lc == pytest.approx(1 / (1 + np.exp(-1.0)), abs=0.04)
    assert lc == pytest.approx(win_rate(scores), abs=0.04)


def test_length_controlled_win_rate_survives_degenerate_inputs() -> None:
    # All wins (separable) and equal lengths (nothing to regress on) stay finite.
    lc = lc_win_rate([1.0] * 20, [100] * 20, [100] * 20)
    assert lc is not None and 0.9 < lc <= 1.0
    assert lc_win_rate([0.5, 0.5], [10, 300], [300, 10]) == pytest.approx(0.5)
