"""The cost crossover of a loop's model: serving the student against paying the API.

- **serving**: the machine's ``serving_cost_per_hour`` x the hours it has served ``model``
  in the window (from its first captured request in the window, or the window's start, to
  now: the machine is up whether or not requests come), per 1M tokens served (captures'
  prompt + completion tokens of ``model``, every tenant's: they share the machine; the
  gateway records the version that answered, ``model@N``, so those count too);
- **API**: the same tokens at the closed model's ``[prices]`` (the teacher's, or
  ``capture_model``'s), per 1M tokens;
- **spend per run**: the teacher (distill step) and the training (train step) of each run;
- **break-even**: tokens a day at which the machine plus the retraining (the last run's
  spend once per cadence period) costs what the API would. Above it the student is
  cheaper.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select

from openclone.config import Settings
from openclone.loop.config import LoopConfig
from openclone.loop.state import RunInfo
from openclone.store.db import Store
from openclone.store.tables import Capture

__all__ = ["WINDOW_DAYS", "Crossover", "crossover", "run_spend"]

WINDOW_DAYS = 30
DAY = 86400.0


def run_spend(run: RunInfo) -> dict[str, float]:
    """What a run paid: the teacher (distill), the training and everything."""
    teacher, train = run.step("distill"), run.step("train")
    return {
        "teacher_usd": round(teacher.cost_usd if teacher else 0.0, 6),
        "training_usd": round(train.cost_usd if train else 0.0, 6),
        "total_usd": round(run.cost_usd, 6),
    }


@dataclass(frozen=True)
class Crossover:
    model: str
    api_model: str | None  # whose [prices] the same traffic is priced at
    window_days: float  # the hours served, in days
    prompt_tokens: int
    completion_tokens: int
    tokens_per_day: float
    serving_usd_per_1m: float | None  # None: no serving_cost_per_hour or no tokens
    api_usd_per_1m: float | None  # None: the closed model has no [prices] or no tokens
    last_run: dict[str, float] | None  # the newest run's spend
    break_even_tokens_per_day: float | None
    cheaper: str | None  # "student" | "api" at the measured volume

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for k in ("serving_usd_per_1m", "api_usd_per_1m", "tokens_per_day",
                  "break_even_tokens_per_day", "window_days"):  # fmt: skip
            if out[k] is not None:
                out[k] = round(out[k], 4)
        return out


def _served_as(model: str) -> ColumnElement[bool]:
    """Captures of ``model``: by its name, or by the pinned version that answered."""
    # autoescape: a name's "_" or "%" matches only itself, not any character
    return or_(Capture.model == model, Capture.model.startswith(model + "@", autoescape=True))


def crossover(
    store: Store,
    settings: Settings,
    config: LoopConfig,
    runs: list[RunInfo],
    now: float | None = None,
) -> Crossover:
    """The crossover of ``config.model`` at ``now`` (default: now; the 30 days up to it);
    ``runs`` newest first (their spend)."""
    now = now if now is not None else time.time()
    start = now - WINDOW_DAYS * DAY
    with store.session() as s:
        first, prompt, completion = s.execute(
            select(
                func.min(Capture.created),
                func.coalesce(func.sum(Capture.prompt_tokens), 0),
                func.coalesce(func.sum(Capture.completion_tokens), 0),
            ).where(
                _served_as(config.model),
                Capture.status == 200,
                Capture.created >= start,
                Capture.created <= now,  # a past ``now`` (a run's end) counts no later traffic
            )
        ).one()
    prompt, completion = int(prompt or 0), int(completion or 0)
    tokens = prompt + completion
    days = max(now - (first if first is not None else start), 60.0) / DAY  # at least a minute
    serving_day = config.serving_cost_per_hour * 24
    serving = serving_day * days / tokens * 1e6 if tokens and serving_day else None
    api_model = next(
        (m for m in (config.capture_model, config.teacher) if m and m in settings.prices), None
    )
    price = settings.prices.get(api_model) if api_model else None
    api = price.cost(prompt, completion) / tokens * 1e6 if price and tokens else None
    last = run_spend(runs[0]) if runs else None
    break_even = None
    if api:
        # Retraining as often as the cadence says, at the last run's spend.
        period_days = min(config.every_seconds, 365 * DAY) / DAY
        retrain_day = (last["total_usd"] if last else 0.0) / period_days
        break_even = (serving_day + retrain_day) / api * 1e6
    per_day = tokens / days
    cheaper = None
    if break_even is not None and tokens:
        cheaper = "student" if per_day >= break_even else "api"
    return Crossover(config.model, api_model, days, prompt, completion, per_day, serving, api,
                     last, break_even, cheaper)  # fmt: skip
