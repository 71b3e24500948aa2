"""Bradley-Terry ratings: recovery of known strengths, the prior's edge cases, battle files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from openclone.data.formats import DatasetFormatError
from openclone.evaluate.arena import Battle, bradley_terry, leaderboard, read_battles

TRUE = {"m-a": 1200.0, "m-b": 1100.0, "m-c": 1000.0, "m-d": 950.0, "m-e": 900.0, "m-f": 850.0}


def _simulate(n: int, seed: int, source: str = "judge") -> list[Battle]:
    rng = np.random.default_rng(seed)
    names = list(TRUE)
    out = []
    for _ in range(n):
        a, b = rng.choice(len(names), 2, replace=False)
        ra, rb = TRUE[names[a]], TRUE[names[b]]
        p = 1 / (1 + 10 ** ((rb - ra) / 400))
        out.append(Battle(names[a], names[b], "a" if rng.random() < p else "b", source))
    return out


def test_bradley_terry_recovers_known_strengths() -> None:
    rows = bradley_terry(_simulate(6000, seed=0), bootstrap=100)
    assert [r.model for r in rows] == list(TRUE)  # best first, the true order
    mean = sum(TRUE.values()) / len(TRUE)
    for r in rows:
        truth = TRUE[r.model] - mean + 1000  # ratings are anchored at mean 1000
        assert r.rating == pytest.approx(truth, abs=35)
        assert r.ci_low <= r.rating <= r.ci_high
        assert r.ci_low - 20 <= truth <= r.ci_high + 20
    assert sum(r.battles for r in rows) == 2 * 6000
    assert sum(r.wins for r in rows) == pytest.approx(6000)


def test_unbeaten_winless_and_disconnected_models_get_finite_ratings() -> None:
    battles = [Battle("champ", "chump", "a")] * 5 + [Battle("x", "y", "tie")] * 3
    rows = {r.model: r for r in bradley_terry(battles, bootstrap=50)}
    assert all(math.isfinite(v) for r in rows.values() for v in (r.rating, r.ci_low, r.ci_high))
    assert rows["champ"].rating > rows["x"].rating == pytest.approx(rows["y"].rating)
    assert rows["x"].rating > rows["chump"].rating
    assert rows["chump"].wins == 0


def test_ties_and_both_bad_count_half_and_sources_filter() -> None:
    battles = [
        Battle("a1", "b1", "tie", "human"),
        Battle("a1", "b1", "both_bad", "human"),
        Battle("a1", "b1", "a", "judge"),
    ]
    human = leaderboard(battles, "human", bootstrap=0)
    assert {r.model: r.wins for r in human} == {"a1": 1.0, "b1": 1.0}
    assert human[0].rating == pytest.approx(1000)
    judge = leaderboard(battles, "judge", bootstrap=0)
    assert judge[0].model == "a1" and judge[0].battles == 1
    assert len(leaderboard(battles, None, bootstrap=0)) == 2
    assert leaderboard([], "all") == []
    with pytest.raises(ValueError, match="source must be"):
        leaderboard(battles, "robots")


def test_battle_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="winner must be one of"):
        Battle("a", "b", "left")
    with pytest.raises(ValueError, match="two different models"):
        Battle("a", "a", "tie")


def test_read_battles_accepts_arena_spellings_and_names_bad_lines(tmp_path: Path) -> None:
    good = tmp_path / "battles.jsonl"
    good.write_text(
        json.dumps({"model_a": "x", "model_b": "y", "winner": "model_a"})
        + "\n\n"
        + json.dumps({"model_a": "x", "model_b": "y", "winner": "tie (bothbad)", "source": "judge"})
        + "\n"
    )
    assert read_battles(good) == [Battle("x", "y", "a"), Battle("x", "y", "both_bad", "judge")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good.read_text() + '{"model_a": "x", "winner": "a"}\n')
    with pytest.raises(DatasetFormatError, match=r"line 4: missing model_b"):
        read_battles(bad)
