"""Arena ratings: Bradley-Terry maximum likelihood over battles, with bootstrap intervals.

A battle is two models answering one prompt and a verdict: ``a``, ``b``, ``tie`` or
``both_bad`` (a tie for the ratings, as in Chatbot Arena). Its ``source`` keeps human votes
(the chat's arena) and judge verdicts (``openclone eval``) apart, so a leaderboard can use
either or both. Ratings are on the Elo scale (400 points = 10:1 odds), mean 1000; the fit
and its prior are described in :mod:`openclone.evaluate.stats`.

Battles come from the store (the chat UI's votes) or from JSONL files, one battle a line:
``{"model_a": ..., "model_b": ..., "winner": "a", "source": "judge"}``. Chatbot Arena's
export spelling (``model_a``/``model_b``/``tie (bothbad)`` as winners) is read too.
:class:`Battle` is the store's (:mod:`openclone.store.votes`), re-exported here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from openclone.data.formats import DatasetFormatError
from openclone.evaluate.stats import ELO_SCALE, bt_bootstrap, bt_strengths, percentile_interval
from openclone.store.votes import SOURCES, WINNERS, Battle

__all__ = [
    "SOURCES",
    "WINNERS",
    "Battle",
    "Rating",
    "append_battles",
    "bradley_terry",
    "leaderboard",
    "read_battles",
]

_ALIASES = {"model_a": "a", "model_b": "b", "tie (bothbad)": "both_bad"}
_SCORE = {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}
MEAN_RATING = 1000.0


@dataclass
class Rating:
    """One leaderboard row; ``wins`` counts ties as half."""

    model: str
    rating: float
    ci_low: float
    ci_high: float
    battles: int
    wins: float


def bradley_terry(
    battles: Sequence[Battle], *, bootstrap: int = 200, seed: int = 0, prior: float = 1.0
) -> list[Rating]:
    """Ratings with 95% percentile-bootstrap intervals (``bootstrap`` resamples), best first.

    ``bootstrap=0`` skips the intervals (they equal the rating). ``prior`` is the number of
    virtual ties each model plays against an average opponent.
    """
    if not battles:
        return []
    models = sorted({b.model_a for b in battles} | {b.model_b for b in battles})
    pos = {m: i for i, m in enumerate(models)}
    pairs = np.array([[pos[b.model_a], pos[b.model_b]] for b in battles], dtype=np.int64)
    scores = np.array([_SCORE[b.winner] for b in battles])
    point = bt_strengths(len(models), pairs, scores, prior=prior)
    if bootstrap > 0:
        samples = bt_bootstrap(
            len(models), pairs, scores, resamples=bootstrap, seed=seed, prior=prior
        )
        low, high = percentile_interval(samples)
    else:
        low, high = point, point
    count = np.bincount(pairs.ravel(), minlength=len(models))
    won = np.bincount(pairs[:, 0], scores, len(models))
    won += np.bincount(pairs[:, 1], 1 - scores, len(models))
    rows = [
        Rating(
            model=m,
            rating=float(MEAN_RATING + ELO_SCALE * point[i]),
            ci_low=float(MEAN_RATING + ELO_SCALE * min(low[i], point[i])),
            ci_high=float(MEAN_RATING + ELO_SCALE * max(high[i], point[i])),
            battles=int(count[i]),
            wins=float(won[i]),
        )
        for i, m in enumerate(models)
    ]
    return sorted(rows, key=lambda r: (-r.rating, r.model))


def leaderboard(
    battles: Iterable[Battle],
    source: str | None = None,
    *,
    bootstrap: int = 200,
    seed: int = 0,
    prior: float = 1.0,
) -> list[Rating]:
    """Ratings from human votes (``"human"``), judge verdicts (``"judge"``) or both
    (``None`` or ``"all"``); best first."""
    if source not in (None, "all", *SOURCES):
        raise ValueError(f"source must be human, judge or all, got {source!r}")
    chosen = [b for b in battles if source in (None, "all", b.source)]
    return bradley_terry(chosen, bootstrap=bootstrap, seed=seed, prior=prior)


def read_battles(path: Path) -> list[Battle]:
    """Battles from a JSONL file; a bad line is a DatasetFormatError naming its number."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DatasetFormatError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise DatasetFormatError(f"{path}: not UTF-8 text: {exc}") from exc
    out = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("expected a JSON object")
            winner = row.get("winner")
            winner = _ALIASES.get(winner, winner) if isinstance(winner, str) else winner
            missing = [k for k in ("model_a", "model_b", "winner") if not row.get(k)]
            if missing:
                raise ValueError(f"missing {', '.join(missing)}")
            out.append(
                Battle(
                    str(row["model_a"]),
                    str(row["model_b"]),
                    str(winner),
                    row.get("source", "human"),
                )
            )
        except ValueError as exc:
            raise DatasetFormatError(f"{path}, line {number}: {exc}") from exc
    return out


def append_battles(path: Path, battles: Iterable[Battle]) -> int:
    """Append battles to a JSONL file (created with its folder); returns how many."""
    lines = [json.dumps(asdict(b), ensure_ascii=False) + "\n" for b in battles]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.writelines(lines)
    return len(lines)
