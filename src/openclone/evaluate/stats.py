"""The numbers behind a verdict: win rates, bootstrap intervals, length control, Bradley-Terry.

Scores are from the candidate's side: 1 a win, 0 a loss, 0.5 a tie. Every random draw comes
from a seeded ``numpy`` generator, so a report can be recomputed exactly.

Length-controlled win rate (after AlpacaEval 2, Dubois et al. 2024). Judges prefer longer
answers, so a model can buy win rate with verbosity. We fit a logistic regression of the
preference on the length difference,

    logit P(candidate preferred) = b0 + b1 * tanh((len_candidate - len_reference) / sd),

``sd`` being the standard deviation of the differences, and report ``sigmoid(b0)``: the win
rate the same judge would give if both answers were equally long. AlpacaEval's GLM also has
per-instruction difficulty terms; with one candidate-reference pair they cancel, so the
model here keeps only the intercept and the length term. Ties are soft targets (0.5).
A ridge penalty on the length slope (``ridge``, one pseudo-observation's worth) keeps the
extrapolation to equal lengths from swinging wildly on small sets where one model is
nearly always longer; a token penalty on the intercept keeps it finite when the outcomes
are separable (all wins, say). On a few hundred prompts the penalty is negligible.

Bradley-Terry: P(i beats j) = sigmoid(θi - θj), fitted by maximum likelihood with Newton's
method on per-pair counts; a tie is half a win for each side. Every model also plays one
virtual tie against a fixed opponent at θ = 0 (``prior`` games): a weak prior that keeps an
unbeaten or winless model finite, makes the problem well posed when the battle graph is
disconnected, and pulls models with few battles toward the middle.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "ELO_SCALE",
    "bootstrap_ci",
    "bt_bootstrap",
    "bt_strengths",
    "lc_win_rate",
    "percentile_interval",
    "win_rate",
]

ELO_SCALE = 400 / math.log(10)  # 400 rating points = 10:1 odds, as in Elo and Chatbot Arena

Floats = NDArray[np.float64]


def win_rate(scores: ArrayLike) -> float | None:
    """The mean score (ties count half); ``None`` when there are no scores."""
    s = np.asarray(scores, dtype=float)
    return float(s.mean()) if s.size else None


def bootstrap_ci(
    scores: ArrayLike, *, level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean score; ``None`` when there are no scores."""
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    s = np.asarray(scores, dtype=float)
    if not s.size:
        return None
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    # Chunks bound the index matrix to a few MB whatever the number of prompts.
    step = max(1, 2_000_000 // s.size)
    for start in range(0, resamples, step):
        k = min(step, resamples - start)
        means[start : start + k] = s[rng.integers(0, s.size, size=(k, s.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def _sigmoid(x: Floats) -> Floats:
    out: Floats = 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow warnings for large |x|
    return out


def _logistic_fit(x: Floats, y: Floats, ridge: Floats, iterations: int = 100) -> Floats:
    """Weights of logit P(y) = X·w by Newton's method (IRLS) with soft targets and a ridge
    (one penalty per weight)."""
    w = np.zeros(x.shape[1])
    for _ in range(iterations):
        p = _sigmoid(x @ w)
        grad = x.T @ (y - p) - ridge * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + np.diag(ridge)
        delta = np.linalg.solve(hess, grad)
        w = w + delta
        if np.max(np.abs(delta)) < 1e-10:
            break
    return w


def lc_win_rate(
    scores: ArrayLike,
    candidate_lengths: ArrayLike,
    reference_lengths: ArrayLike,
    *,
    ridge: float = 1.0,
) -> float | None:
    """The win rate predicted at equal answer lengths (see the module doc); ``None`` if empty."""
    y = np.asarray(scores, dtype=float)
    diff = np.asarray(candidate_lengths, dtype=float) - np.asarray(reference_lengths, dtype=float)
    if y.shape != diff.shape:
        raise ValueError(f"{y.size} scores but {diff.size} length differences")
    if not y.size:
        return None
    sd = diff.std()
    # Equal lengths everywhere leave nothing to control for: the slope stays at 0.
    feature = np.tanh(diff / sd) if sd > 0 else np.zeros_like(diff)
    x = np.column_stack([np.ones_like(feature), feature])
    # The intercept gets only a token penalty (it is the answer); the slope gets ``ridge``.
    w = _logistic_fit(x, y, np.array([1e-3, ridge]))
    return float(_sigmoid(np.array([w[0]]))[0])


# ---- Bradley-Terry ---------------------------------------------------------------------


def bt_strengths(
    n_models: int,
    pairs: NDArray[np.int64],
    scores: Floats,
    *,
    weights: Floats | None = None,
    prior: float = 1.0,
    iterations: int = 100,
) -> Floats:
    """Maximum-likelihood strengths θ (natural log-odds scale, mean 0) of ``n_models``.

    ``pairs`` is an (N, 2) array of model indices (a, b); ``scores[k]`` is a's score in
    battle k (1, 0.5 or 0); ``weights`` counts each battle (the bootstrap resamples with it).
    """
    if prior <= 0:
        raise ValueError("prior must be positive: it keeps the fit finite")
    w = np.ones(len(scores)) if weights is None else weights
    a, b = pairs[:, 0], pairs[:, 1]
    games = np.zeros((n_models, n_models))
    np.add.at(games, (a, b), w)
    np.add.at(games, (b, a), w)
    won = np.zeros(n_models)
    np.add.at(won, a, w * scores)
    np.add.at(won, b, w * (1 - scores))
    won += prior * 0.5  # the virtual tie
    theta = np.zeros(n_models)
    for _ in range(iterations):
        p = _sigmoid(theta[:, None] - theta[None, :])
        p0 = _sigmoid(theta)  # against the virtual opponent at 0
        grad = won - (games * p).sum(axis=1) - prior * p0
        curv = games * p * (1 - p)
        hess = np.diag(curv.sum(axis=1) + prior * p0 * (1 - p0)) - curv
        step = np.linalg.solve(hess, grad)
        # Damped: a full Newton step can overshoot while an unbeaten model runs far out.
        step = np.clip(step, -2.0, 2.0)
        theta = theta + step
        if np.max(np.abs(step)) < 1e-9:
            break
    centred: Floats = theta - theta.mean()
    return centred


def bt_bootstrap(
    n_models: int,
    pairs: NDArray[np.int64],
    scores: Floats,
    *,
    resamples: int,
    seed: int = 0,
    prior: float = 1.0,
) -> Floats:
    """Strengths refitted on ``resamples`` resamples of the battles, shape (resamples, n)."""
    rng = np.random.default_rng(seed)
    out = np.empty((resamples, n_models))
    n = len(scores)
    for k in range(resamples):
        # Multinomial counts are the same draw as resampling battles with replacement.
        counts = rng.multinomial(n, np.full(n, 1 / n)).astype(float)
        out[k] = bt_strengths(n_models, pairs, scores, weights=counts, prior=prior)
    return out


def percentile_interval(samples: Floats, level: float = 0.95) -> tuple[Floats, Floats]:
    """Per-column percentile interval of bootstrap ``samples``."""
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail], axis=0)
    return low, high
