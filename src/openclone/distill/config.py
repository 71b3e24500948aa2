"""``DistillConfig``: everything one distillation run needs, documented and checked in one place."""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openclone.config import Price
from openclone.errors import OpenCloneError

__all__ = ["DistillConfig", "DistillError", "RetryPolicy", "checked_price", "load_prices"]


class DistillError(OpenCloneError):
    """A distill run that cannot start or go on; the message says why and what to do."""


def checked_price(input: float, output: float) -> Price:
    """A :class:`~openclone.config.Price` from a file or flags; a negative one is a
    DistillError rather than a validation error."""
    if input < 0 or output < 0:
        raise DistillError("prices cannot be negative")
    return Price(input, output)


def load_prices(path: Path) -> dict[str, Price]:
    """Prices per model from a TOML or JSON file: a ``prices`` (or ``distill.prices``) table
    of ``"model" = { input = 0.15, output = 0.60 }`` in dollars per million tokens."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except FileNotFoundError:
        raise DistillError(f"prices file not found: {path}") from None
    except (OSError, ValueError) as exc:  # TOMLDecodeError and JSONDecodeError are ValueErrors
        raise DistillError(f"{path}: cannot read prices: {exc}") from exc
    table = data.get("distill", {}).get("prices") if "distill" in data else data.get("prices")
    if not isinstance(table, dict):
        raise DistillError(f'{path}: expected a "prices" table of model = {{ input, output }}')
    prices = {}
    for model, entry in table.items():
        if not isinstance(entry, dict) or not set(entry) <= {"input", "output"}:
            raise DistillError(f"{path}: prices.{model} must be {{ input = …, output = … }}")
        try:
            prices[model] = checked_price(
                float(entry.get("input", 0)), float(entry.get("output", 0))
            )
        except (TypeError, ValueError) as exc:
            raise DistillError(f"{path}: prices.{model}: {exc}") from exc
    return prices


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one teacher request is tried before it counts as failed."""

    max_attempts: int = 6
    """Tries per request, the first included, on 429s, retryable 5xx and timeouts."""
    backoff: float = 1.0
    """Seconds before the first retry; doubled each retry, with jitter."""
    backoff_max: float = 60.0
    """Longest wait between two tries."""
    timeout: float = 300.0
    """Seconds one request may take before it is abandoned and retried."""
    give_up_after: int = 3
    """Requests in a row that exhaust their tries before the run stops (the teacher is down)."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.give_up_after < 1:
            raise DistillError("max_attempts and give_up_after must be at least 1")
        if self.backoff < 0 or self.backoff_max < 0 or self.timeout <= 0:
            raise DistillError("backoff must be >= 0 and timeout > 0")


@dataclass
class DistillConfig:
    """One distillation run: new tasks by Self-Instruct, or new answers to given prompts."""

    out: Path
    """The dataset, OpenAI chat JSONL, appended as rows are made; ``OUT.state.json`` beside
    it lets a re-run continue, ``OUT.card.json``/``OUT.card.md`` describe it."""
    count: int
    """Rows wanted in ``out``, rows of earlier runs on the same ``out`` included. In prompt
    mode, at most this many prompts are answered."""
    teacher: str
    """Catalog (or upstream) model name that writes tasks and answers."""

    # --- Self-Instruct ---
    seeds: Path | None = None
    """Seed tasks (JSONL of instruction/input/output, Alpaca JSON or chat JSONL); ``None``:
    the bundled set."""
    tasks_per_request: int = 8
    """New tasks asked for in one task-writing request."""
    prompt_seeds: int = 4
    """Seed tasks shown as examples in each task-writing request."""
    prompt_generated: int = 2
    """Already generated tasks shown alongside them (once there are some)."""
    threshold: float = 0.7
    """An instruction whose ROUGE-L F with a kept or seed instruction is above this is dropped."""
    temperature: float = 1.0
    """Sampling temperature for writing tasks: high, for variety."""
    max_tokens: int = 1024
    """Token limit of a task-writing reply; an item cut off by it is dropped."""
    max_rounds: int | None = None
    """Task-writing requests this invocation may send; ``None``: 10 + 4x the requests the
    count needs if every task were kept. It bounds a run whose teacher writes no usable tasks."""

    # --- answers (both modes) ---
    answer_temperature: float = 0.7
    answer_max_tokens: int = 1024
    keep_truncated: bool = False
    """Keep answers cut off by ``answer_max_tokens`` (a student would learn to stop mid-way)."""
    system_prompt: str | None = None
    """System message for answering; it is not written into the dataset rows."""

    # --- the teacher as a service ---
    concurrency: int = 8
    """Teacher requests in flight at once."""
    requests_per_minute: float | None = None
    """Upper bound on request starts per minute (``None``: no limit beyond ``concurrency``)."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    price: Price = field(default_factory=Price)
    random_seed: int | None = None
    """Seed of the example sampling, for a reproducible run order (answers still vary)."""

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.seeds is not None:
            self.seeds = Path(self.seeds)
        checks = [
            (self.count >= 1, "count must be at least 1"),
            (bool(self.teacher), "a teacher model is needed"),
            (self.tasks_per_request >= 1, "tasks_per_request must be at least 1"),
            (self.prompt_seeds >= 1, "prompt_seeds must be at least 1"),
            (self.prompt_generated >= 0, "prompt_generated cannot be negative"),
            (0.0 <= self.threshold <= 1.0, "threshold must be between 0 and 1"),
            (0.0 <= self.temperature <= 2.0, "temperature must be between 0 and 2"),
            (0.0 <= self.answer_temperature <= 2.0, "answer_temperature must be between 0 and 2"),
            (self.max_tokens >= 16, "max_tokens must be at least 16"),
            (self.answer_max_tokens >= 1, "answer_max_tokens must be at least 1"),
            (self.max_rounds is None or self.max_rounds >= 1, "max_rounds must be at least 1"),
            (self.concurrency >= 1, "concurrency must be at least 1"),
            (
                self.requests_per_minute is None or self.requests_per_minute > 0,
                "requests_per_minute must be positive",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise DistillError(message)

    def round_budget(self) -> int:
        if self.max_rounds is not None:
            return self.max_rounds
        return 10 + 4 * math.ceil(self.count / self.tasks_per_request)

    def parameters(self) -> dict[str, Any]:
        """The settings that shaped the data, for the dataset card (paths as strings)."""
        data = dataclasses.asdict(self)
        for key in ("out", "seeds"):
            data[key] = str(data[key]) if data[key] is not None else None
        # the card's spelling since its first version
        data["price"] = {
            "input_per_million": self.price.input,
            "output_per_million": self.price.output,
        }
        return data
