"""One ``openclone distill`` run, from what was asked to its result.

:class:`DistillRequest` holds what the command line (or a job's spec) asked for, in plain
JSON-ready values; :func:`plan` checks it and resolves it into a :class:`DistillPlan` (the
config, prices, the source of prompts) without contacting the teacher, so a mistake fails
before anything starts; :func:`run_plan` runs it. The CLI runs a plan in the foreground
with a progress bar, the ``distill`` job kind runs the same plan in a worker process.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from openclone.config import Price, Settings, load_settings
from openclone.distill.config import (
    DistillConfig,
    DistillError,
    RetryPolicy,
    checked_price,
    load_prices,
)
from openclone.distill.run import DistillResult, ProgressEvent
from openclone.distill.seeds import SeedSet, load_seeds

__all__ = ["DistillPlan", "DistillRequest", "plan", "run_plan", "shortfall"]


@dataclass
class DistillRequest:
    out: str
    count: int
    teacher: str | None = None  # default: the catalog's default model
    seeds: str | None = None
    prompts: str | None = None  # re-answer these prompts instead of writing tasks
    from_captures: bool = False  # re-answer the store's consented captures
    tenant: str | None = None
    capture_model: str | None = None
    since: str | None = None  # ISO dates
    until: str | None = None
    min_chars: int = 0
    concurrency: int = 8
    rpm: float | None = None
    threshold: float = 0.7
    temperature: float = 1.0
    answer_temperature: float = 0.7
    max_tokens: int = 1024
    answer_max_tokens: int = 1024
    tasks_per_request: int = 8
    max_rounds: int | None = None
    keep_truncated: bool = False
    system: str | None = None
    max_attempts: int = 6
    timeout: float = 300.0
    price_input: float | None = None
    price_output: float | None = None
    prices: str | None = None  # TOML/JSON prices file
    random_seed: int | None = None
    base_url: str | None = None  # a teacher behind this URL instead of the catalog
    config: str | None = None  # openclone.toml

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DistillRequest:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def job_spec(self) -> dict[str, Any]:
        """The ``distill`` job's spec, every path absolute: the worker runs elsewhere."""
        spec = {**self.to_dict(), "out": str(Path(self.out).resolve())}
        for name in ("seeds", "prompts", "prices", "config"):
            if spec[name]:
                spec[name] = str(Path(spec[name]).resolve())
        return spec


@dataclass
class DistillPlan:
    config: DistillConfig
    settings: Settings
    base_url: str | None
    seeds: SeedSet | None  # Self-Instruct when set
    source: Iterable[Any] | None  # prompts to re-answer when set
    origin: dict[str, Any]  # where the prompts came from, for the card


def _day(value: str | None, flag: str) -> float | None:
    if value is None:
        return None
    try:
        return dt.datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise DistillError(f"{flag}: expected a date like 2026-01-31, got {value!r}") from None


def plan(req: DistillRequest) -> DistillPlan:
    """Check ``req`` and resolve it; raises :class:`DistillError` or ``ConfigError``."""
    if req.prompts is not None and req.from_captures:
        raise DistillError("--prompts and --from-captures are two sources; choose one")
    since, until = _day(req.since, "--since"), _day(req.until, "--until")
    settings = load_settings(Path(req.config) if req.config else None)
    model = req.teacher or settings.default_model or ""
    configured = settings.prices.get(model)
    listed = (load_prices(Path(req.prices)) if req.prices else {}).get(model, configured or Price())
    # A flag beats the prices file, which beats openclone.toml's [prices], which beats 0.
    teacher_price = checked_price(
        listed.input if req.price_input is None else req.price_input,
        listed.output if req.price_output is None else req.price_output,
    )
    config = DistillConfig(
        out=Path(req.out),
        count=req.count,
        teacher=model,
        seeds=Path(req.seeds) if req.seeds else None,
        tasks_per_request=req.tasks_per_request,
        threshold=req.threshold,
        temperature=req.temperature,
        max_tokens=req.max_tokens,
        max_rounds=req.max_rounds,
        answer_temperature=req.answer_temperature,
        answer_max_tokens=req.answer_max_tokens,
        keep_truncated=req.keep_truncated,
        system_prompt=req.system,
        concurrency=req.concurrency,
        requests_per_minute=req.rpm,
        retry=RetryPolicy(max_attempts=req.max_attempts, timeout=req.timeout),
        price=teacher_price,
        random_seed=req.random_seed,
    )
    source: Iterable[Any] | None = None
    origin: dict[str, Any] = {}
    if req.prompts is not None:
        from openclone.distill.captures import read_prompts

        source, origin = read_prompts(Path(req.prompts)), {"prompts": req.prompts}
    elif req.from_captures:
        from openclone.distill.captures import captured_prompts

        asked = {
            "tenant": req.tenant,
            "model": req.capture_model,
            "since": req.since,
            "until": req.until,
            "min_chars": req.min_chars,
        }
        shown = {k: v for k, v in asked.items() if v}  # as typed, for the card
        # The same filters with the dates as timestamps, for the store.
        filters = {**shown, **{k: v for k, v in (("since", since), ("until", until)) if k in shown}}
        source = captured_prompts(settings, filters)
        origin = {"captures": shown or "all consented"}
    seed_set = load_seeds(Path(req.seeds) if req.seeds else None) if source is None else None
    return DistillPlan(config, settings, req.base_url, seed_set, source, origin)


async def run_plan(
    p: DistillPlan,
    api_key: str | None = None,
    on_progress: Callable[[ProgressEvent], None] | None = None,
) -> DistillResult:
    """Run the plan to its end; rows are appended as they are made, so a cancelled run
    (Ctrl-C, a job cancelled) continues where it stopped when run again."""
    from openclone.distill.captures import distill_prompts
    from openclone.distill.selfinstruct import distill_self_instruct
    from openclone.distill.teacher import open_teacher_client

    client = await open_teacher_client(p.settings, p.config.teacher, p.base_url, api_key)
    try:
        if p.source is None:
            return await distill_self_instruct(
                p.config, client, seeds=p.seeds, on_progress=on_progress
            )
        return await distill_prompts(
            p.config, client, p.source, source=p.origin, on_progress=on_progress
        )
    finally:
        await client.aclose()


def shortfall(p: DistillPlan, result: DistillResult) -> str | None:
    """Why ``result`` must not pass as a success, else None.

    Fewer rows than asked for (the round budget ran out) must not slip silently into a
    training pipeline: the CLI exits 3, a job fails. The rows stay either way, and the same
    run started again continues from them.
    """
    if result.status != "budget exhausted":
        return None
    return (
        f"budget exhausted: {result.kept} of {p.config.count} rows in {result.out}; raise "
        "--max-rounds or use a stronger --teacher"
    )
