"""``LoopConfig``: one ``[[loops]]`` entry of openclone.toml, documented and checked here.

The smallest useful loop names what to keep promoted, whose traffic to learn from, the
teacher and the budget::

    [[loops]]
    name = "support"
    model = "support"
    tenant = "acme"
    teacher = "smollm2-135m-instruct"
    student_base = "smollm2-135m-instruct"
    judge = "smollm2-135m-instruct"
    every = "1d"
    [loops.budget]
    examples = 8
    train_steps = 20
    eval_prompts = 6
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from openclone.config import BUNDLED_MODEL_NAME, Settings
from openclone.errors import ConfigError, OpenCloneError
from openclone.registry.gate import MIN_CANARY_PAIRS
from openclone.store.splits import DEFAULT_POLICY

__all__ = ["LoopBudget", "LoopConfig", "LoopError", "get_loop", "load_loops", "parse_every"]

# A loop's name becomes part of a training run's name, which allows no dots.
_LOOP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # a registry name
_EVERY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class LoopError(OpenCloneError):
    """A loop that cannot run now (unknown, paused, already running); the message says why."""


def parse_every(text: str) -> float:
    """Seconds in a cadence such as ``"1d"``, ``"12h"``, ``"30m"``, ``"1w"``; ``"off"``: no
    time cadence (the loop runs on ``every_captures`` alone), as infinity."""
    if text.strip() == "off":
        return float("inf")
    match = _EVERY.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise ConfigError(f'every: expected a period such as "1d", "12h" or "30m", not {text!r}')
    return float(match.group(1)) * _UNITS[match.group(2)]


def _policy_ok(policy: Any) -> bool:
    """A canary rollback rule: known keys, numbers of at least 0."""
    return isinstance(policy, dict) and all(
        k in DEFAULT_POLICY and isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
        for k, v in policy.items()
    )


def _known(cls: type, data: dict[str, Any], where: str) -> None:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}"
        )


@dataclass(frozen=True)
class LoopBudget:
    """What one run may spend."""

    examples: int = 200
    """Rows the teacher writes (answers to fresh captured prompts)."""
    train_steps: int = 200
    """Optimizer steps of the candidate's LoRA training."""
    eval_prompts: int = 50
    """Prompts judged: a held-out slice of fresh captures (up to half) plus the fixed set."""
    teacher_usd: float | None = None
    """Dollars the teacher may cost in one run (its tokens x ``[prices]``, or its machine's
    ``teacher_cost_per_hour`` x time): distilling stops at it (None: no limit)."""
    gpu_hours: float | None = None
    """Hours of the training machine (GPU or CPU) one run's training may take: training
    stops at it and the candidate is what it learned by then (None: no limit)."""

    def __post_init__(self) -> None:
        for name in ("examples", "train_steps", "eval_prompts"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"budget.{name}: an integer of at least 1, not {value!r}")
        for name in ("teacher_usd", "gpu_hours"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, int | float) or isinstance(value, bool) or value <= 0
            ):
                raise ConfigError(f"budget.{name}: a number above 0, not {value!r}")


@dataclass(frozen=True)
class LoopConfig:
    """One retraining loop: capture → curate → distill → train → evaluate → shadow → canary
    → decide → report."""

    name: str
    """The loop's name, as in ``openclone loop run NAME``."""
    model: str
    """The registry name the loop keeps promoted; each run adds a candidate version of it."""
    tenant: str
    """Whose consented captures it learns from."""
    teacher: str
    """Catalog model that writes the new answers (and the parity target of the evaluation)."""
    student_base: str = BUNDLED_MODEL_NAME
    """Catalog model (with a ``model_path``) or a path: the base the candidate's LoRA is for."""
    judge: str | None = None
    """Catalog model that compares answers; default: the teacher."""
    every: str = "1d"
    """Cadence of ``openclone loop start`` (and ``serve --loops``): a run starts this long
    after the last one ended, so a long run never makes the next one due at once; "off":
    only ``every_captures`` starts runs."""
    every_captures: int | None = None
    """Also start a run once this many new consented captures arrived since the last run
    that used its data, whichever comes first (None: time alone)."""
    budget: LoopBudget = field(default_factory=LoopBudget)
    capture_model: str | None = None
    """Only captures answered by this model name; default: all of the tenant's."""
    min_captures: int = 10
    """Fewer new consented captures (after dedupe) than this: the run ends as "not enough data"."""
    min_chars: int = 0
    """Skip captured conversations shorter than this."""
    dedupe_threshold: float = 0.7
    """Drop a prompt whose ROUGE-L F with a kept one is above this (Alpaca's filter)."""
    holdout: float = 0.2
    """Share of fresh captured prompts held out of training for the evaluation."""
    eval_set: str = "general"
    """The fixed part of the eval set: a bundled set's name or an eval file."""
    teacher_margin: float = 0.05
    """The gate's parity target: a win rate against the teacher of at least (1 - this) x 50%."""
    judge_json: bool = True
    """Have the judge's engine enforce the verdict's JSON form, so no verdict is lost."""
    review: bool = False
    """Human review between distill and train: the run waits until no distilled example
    is pending (admin page, ``openclone data review``), then trains on the approved ones."""
    answer_max_tokens: int = 512
    """Token limit of a teacher answer."""
    eval_max_tokens: int = 256
    """Token limit of an answer, and of a verdict, during the evaluation."""
    concurrency: int = 4
    """Requests in flight to the teacher, and during the evaluation."""
    cost_per_hour: float = 0.0
    """$ per hour of the training machine, for the run's cost."""
    teacher_cost_per_hour: float = 0.0
    """$ per hour of a local teacher's machine: the distill step costs this x its time, on
    top of the teacher's tokens x ``[prices]`` (0: only the tokens are priced)."""
    serving_cost_per_hour: float = 0.0
    """$ per hour of the machine serving ``model``: with the tokens it served (captures),
    the measured $/1M tokens of the cost crossover in ``loop status`` and the report."""
    deprecation_days: int = 30
    """Within this many days of the closed model's shutdown (``[deprecations]``, by the
    teacher's or ``capture_model``'s name), the loop runs on ``deprecation_every``."""
    deprecation_every: str | None = None
    """Cadence inside that window (default: half of ``every``)."""
    shadow_pairs: int = 0
    """Live requests the candidate is judged on before the decision: a shadow answers a
    sampled share of ``model``'s chat traffic in the background, never returned to the
    caller, and the judge compares its answers with the live ones (0: no shadow)."""
    shadow_share: float = 0.2
    """Share of ``model``'s live chat requests the shadow also answers."""
    shadow_wait: float = 3600.0
    """Seconds to wait for ``shadow_pairs`` pairs; the pairs stored by then are judged, and
    with none the step records "skipped: no traffic"."""
    min_shadow_win_rate: float | None = None
    """The gate's live-traffic rule: the win rate against the incumbent on shadowed requests
    must reach this (None: it must only not be significantly below 50%)."""
    canary_share: float = 0.0
    """Once the gate agrees, the candidate serves this share of ``model``'s requests (sticky
    per conversation or person) before it is promoted (0: no canary)."""
    canary_requests: int = 50
    """Requests the canary answers before it passes."""
    canary_wait: float = 3600.0
    """Seconds to wait for them; with no canary traffic by then the step records "skipped:
    no traffic", with some the canary passes on what it served."""
    canary_pairs: int = 20
    """Canary chat requests the incumbent also answers in the background (never returned,
    as a shadow's), for the judge to compare while the canary runs: at 5, 10, 20, …
    judged pairs, a canary whose win rate is significantly below 50% is rolled back, and the
    gate refuses one whose judged pairs say so at the end (0: quality is not judged during
    the canary, only errors and latency; otherwise at least 5)."""
    retrain_on_erasure: str = "now"
    """When an erasure taints the version the loop keeps promoted (it was trained on erased
    data): ``"now"`` runs the loop at once, ``"next"`` on its next turn; either way the run
    re-collects the tainted version's window without the erased rows, and once its
    candidate passes the gate the tainted versions are archived (loop/taint.py)."""
    canary_policy: dict[str, float] = field(default_factory=dict)
    """When gateways roll the canary back: ``min_requests`` (10), ``max_error_increase``
    (0.05: its error rate above the incumbent's), ``max_latency_ratio`` (2.0: its mean
    latency over the incumbent's)."""

    def __post_init__(self) -> None:
        checks = [
            (bool(_LOOP_NAME.match(self.name)), "name: letters, digits, _ and - (at most 40)"),
            (
                bool(_MODEL_NAME.match(self.model)),
                "model: a registry name (letters, digits, . _ -)",
            ),
            (bool(self.tenant), "tenant: whose captures to learn from"),
            (bool(self.teacher), "teacher: a catalog model"),
            (bool(self.student_base), "student_base: a catalog model or a path"),
            (self.min_captures >= 1, "min_captures: at least 1"),
            (self.min_chars >= 0, "min_chars: 0 or more"),
            (0 <= self.dedupe_threshold <= 1, "dedupe_threshold: between 0 and 1"),
            (0 <= self.holdout < 1, "holdout: in [0, 1)"),
            (0 <= self.teacher_margin < 1, "teacher_margin: in [0, 1)"),
            (self.answer_max_tokens >= 1, "answer_max_tokens: at least 1"),
            (self.eval_max_tokens >= 1, "eval_max_tokens: at least 1"),
            (self.concurrency >= 1, "concurrency: at least 1"),
            (self.cost_per_hour >= 0, "cost_per_hour: 0 or more"),
            (self.teacher_cost_per_hour >= 0, "teacher_cost_per_hour: 0 or more"),
            (self.serving_cost_per_hour >= 0, "serving_cost_per_hour: 0 or more"),
            (self.deprecation_days >= 1, "deprecation_days: at least 1"),
            (
                self.every_captures is None or self.every_captures >= 1,
                "every_captures: at least 1",
            ),
            (
                self.every.strip() != "off" or self.every_captures is not None,
                'every = "off" needs every_captures (else the loop never runs)',
            ),
            (self.shadow_pairs >= 0, "shadow_pairs: 0 or more"),
            (0 < self.shadow_share <= 1, "shadow_share: in (0, 1]"),
            (self.shadow_wait >= 0, "shadow_wait: seconds, 0 or more"),
            (
                self.min_shadow_win_rate is None or 0 <= self.min_shadow_win_rate <= 1,
                "min_shadow_win_rate: in [0, 1]",
            ),
            (
                self.min_shadow_win_rate is None or self.shadow_pairs > 0,
                "min_shadow_win_rate: needs shadow_pairs (the live traffic it is measured on)",
            ),
            (0 <= self.canary_share <= 1, "canary_share: in [0, 1]"),
            (self.canary_requests >= 1, "canary_requests: at least 1"),
            (self.canary_wait >= 0, "canary_wait: seconds, 0 or more"),
            (
                self.canary_pairs == 0 or self.canary_pairs >= MIN_CANARY_PAIRS,
                f"canary_pairs: 0 (off) or at least {MIN_CANARY_PAIRS} (fewer cannot show a "
                "regression)",
            ),
            (_policy_ok(self.canary_policy), "canary_policy: " + ", ".join(DEFAULT_POLICY)),
            (isinstance(self.review, bool), "review: true or false"),
            (self.retrain_on_erasure in ("now", "next"), 'retrain_on_erasure: "now" or "next"'),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ConfigError(f"[[loops]] {self.name!r}:\n  " + "\n  ".join(problems))
        parse_every(self.every)
        if self.deprecation_every is not None:
            parse_every(self.deprecation_every)

    @property
    def every_seconds(self) -> float:
        return parse_every(self.every)

    @property
    def deprecation_every_seconds(self) -> float:
        """The cadence once the closed model's shutdown is near."""
        if self.deprecation_every is not None:
            return parse_every(self.deprecation_every)
        return self.every_seconds / 2

    @property
    def judge_model(self) -> str:
        return self.judge or self.teacher

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoopConfig:
        """From one ``[[loops]]`` table; unknown keys are an error, not ignored."""
        where = f"[[loops]] {data.get('name', '?')!r}"
        _known(cls, data, where)
        missing = [k for k in ("name", "model", "tenant", "teacher") if k not in data]
        if missing:
            raise ConfigError(f"{where}: missing {', '.join(missing)}")
        values = dict(data)
        budget = values.pop("budget", {})
        if not isinstance(budget, dict):
            raise ConfigError(f"{where}: budget must be a table ([loops.budget])")
        _known(LoopBudget, budget, f"{where} budget")
        try:
            return cls(**values, budget=LoopBudget(**budget))
        except TypeError as exc:  # a value of the wrong type reached a comparison
            raise ConfigError(f"{where}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_loops(settings: Settings) -> list[LoopConfig]:
    """Every ``[[loops]]`` of the settings, checked; names must be unique."""
    loops = [LoopConfig.from_dict(dict(entry)) for entry in settings.loops]
    names = [loop.name for loop in loops]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"[[loops]] names must be unique; repeated: {', '.join(dupes)}")
    return loops


def get_loop(settings: Settings, name: str) -> LoopConfig:
    for loop in load_loops(settings):
        if loop.name == name:
            return loop
    known = ", ".join(loop.name for loop in load_loops(settings)) or "none; add [[loops]]"
    raise ConfigError(f"no loop named {name!r} in the settings (loops: {known})")
