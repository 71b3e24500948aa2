"""What an evaluation produces: answers with their cost, per-prompt rows, the report."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from openclone.evaluate.judge import Verdict

__all__ = ["Answer", "EvalReport", "EvalRow", "ModelSummary"]


@dataclass
class Answer:
    text: str
    latency_s: float  # the successful call, not the retries before it
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    finish_reason: str | None = None

    @property
    def length(self) -> int:
        """Characters: what length control uses (AlpacaEval does the same)."""
        return len(self.text)


@dataclass
class EvalRow:
    index: int
    prompt: str
    expected: str | None = None  # the set's reference answer
    id: str | None = None
    category: str | None = None
    candidate: Answer | None = None
    reference: Answer | None = None
    verdicts: list[Verdict | None] = field(default_factory=list)  # [candidate as A, as B]
    judge_replies: list[str] = field(default_factory=list)
    score: float | None = None  # the candidate's: 1 win, 0.5 tie, 0 loss, None missing
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # model side -> metric
    judge_cost: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for side in ("candidate", "reference"):
            answer = getattr(self, side)
            if answer is not None:
                out[side]["length"] = answer.length
        return out


@dataclass
class ModelSummary:
    """One model's answers across the set."""

    answers: int
    latency_mean_s: float | None
    latency_p95_s: float | None
    completion_tokens_mean: float | None
    cost_total: float
    cost_per_answer: float | None
    length_mean: float | None
    metrics: dict[str, float]  # means over the prompts with a reference answer

    @classmethod
    def of(cls, answers: list[Answer], metrics: list[dict[str, float]]) -> ModelSummary:
        lat = sorted(a.latency_s for a in answers)
        n = len(answers)
        cost = sum(a.cost for a in answers)
        names = sorted({k for m in metrics for k in m})
        return cls(
            answers=n,
            latency_mean_s=statistics.fmean(lat) if n else None,
            latency_p95_s=lat[min(n - 1, int(0.95 * n))] if n else None,
            completion_tokens_mean=statistics.fmean(a.completion_tokens for a in answers)
            if n
            else None,
            cost_total=cost,
            cost_per_answer=cost / n if n else None,
            length_mean=statistics.fmean(a.length for a in answers) if n else None,
            metrics={k: statistics.fmean(m[k] for m in metrics if k in m) for k in names},
        )


@dataclass
class EvalReport:
    """A candidate against a reference model on one prompt set, graded by a judge.

    ``n`` counts the prompts with an outcome; ``win_rate`` is the candidate's mean score
    over them (ties half) with a 95% bootstrap interval; ``None`` when ``n`` is 0.
    ``unparsed`` counts judge replies without a readable verdict; ``errors`` the prompts
    that failed (a model or the judge refused or could not answer).
    """

    candidate: str
    reference: str
    judge: str
    prompt_set: str
    n: int
    wins: int
    ties: int
    losses: int
    win_rate: float | None
    ci_low: float | None
    ci_high: float | None
    lc_win_rate: float | None
    unparsed: int
    errors: int
    judge_cost: float
    summary: dict[str, ModelSummary]  # "candidate" / "reference"
    settings: dict[str, Any]
    created: str
    rows: list[EvalRow]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rows"] = [r.to_dict() for r in self.rows]
        return out

    def verdict_line(self) -> str:
        """One line for terminals and logs."""
        if self.win_rate is None or self.ci_low is None or self.ci_high is None:
            return f"{self.candidate} vs {self.reference}: no judged prompts"
        lc = f", length-controlled {self.lc_win_rate:.1%}" if self.lc_win_rate is not None else ""
        return (
            f"{self.candidate} vs {self.reference}: win rate {self.win_rate:.1%} "
            f"(95% CI {self.ci_low:.1%}-{self.ci_high:.1%}, n={self.n}){lc}"
        )
