"""Candidate against reference: both answer every prompt, a judge compares each pair twice.

:func:`evaluate_pair` is the library call; :class:`EvalConfig` with :func:`run_eval` is the
recipe the CLI (and a job) runs: load the set, evaluate, write the reports, and add the
judge's verdicts to the arena's battles.

Every request is greedy by default (temperature 0, a fixed seed), so a rerun on the same
engines gives the same answers. ``concurrency`` bounds the requests in flight across models
and judge together; a server batches them (llama.cpp's slots, vLLM's continuous batching).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import re
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from openclone.config import Price
from openclone.errors import APIError, InvalidRequestError
from openclone.evaluate.arena import Battle, append_battles
from openclone.evaluate.calls import FATAL, ask
from openclone.evaluate.judge import combine, judge_messages, parse_verdict, verdict_format
from openclone.evaluate.metrics import reference_metrics
from openclone.evaluate.results import Answer, EvalReport, EvalRow, ModelSummary
from openclone.evaluate.sets import EvalItem, PromptSet, held_out_set, load_prompt_set
from openclone.evaluate.stats import bootstrap_ci, lc_win_rate, win_rate
from openclone.schema import ChatMessage

if TYPE_CHECKING:
    from openclone.config import Settings
    from openclone.routing.client import ChatClient

__all__ = [
    "EvalConfig",
    "EvalJob",
    "EvalRun",
    "battles_of",
    "default_out",
    "evaluate_pair",
    "open_and_run_eval",
    "record_battles",
    "run_eval",
]

T = TypeVar("T")
_RETRY_TEMPERATURE = 0.7  # a second judge reply, sampled: greedy would repeat the first
Progress = Callable[[int, int], None]


def _as_item(p: EvalItem | str) -> EvalItem:
    if isinstance(p, EvalItem):
        return p
    return EvalItem([ChatMessage(role="user", content=p)], p)


@dataclass
class _Pairing:
    """One evaluation's fixed parts; :meth:`row` answers and judges one prompt."""

    client: ChatClient
    candidate: str
    reference: str
    judge: str
    max_tokens: int
    judge_max_tokens: int
    judge_json: bool
    temperature: float
    seed: int
    prices: dict[str, Price]
    retries: int
    backoff: float
    gate: asyncio.Semaphore  # requests in flight

    async def ask(
        self,
        model: str,
        messages: Sequence[ChatMessage],
        *,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> Answer:
        async with self.gate:
            return await ask(
                self.client,
                model,
                messages,
                max_tokens=self.max_tokens,
                temperature=self.temperature if temperature is None else temperature,
                seed=self.seed if seed is None else seed,
                price=self.prices.get(model),
                retries=self.retries,
                backoff=self.backoff,
            )

    async def verdict(self, prompt: str, a: str, b: str) -> tuple[Answer, float]:
        """The judge's reply on A vs B, and its cost with any retry. A reply without a
        readable verdict is asked once more, sampled (at temperature 0 the same reply
        would come back); an engine that cannot enforce the verdict's JSON schema turns
        the enforcing off for the rest of the run rather than failing every prompt."""
        cost = 0.0
        replies: list[Answer] = []
        while len(replies) < 2:
            enforce, attempt = self.judge_json, len(replies)
            try:
                async with self.gate:
                    reply = await ask(
                        self.client,
                        self.judge,
                        judge_messages(prompt, a, b, enforce),
                        max_tokens=self.judge_max_tokens,
                        temperature=self.temperature if attempt == 0 else _RETRY_TEMPERATURE,
                        seed=self.seed + attempt,
                        price=self.prices.get(self.judge),
                        retries=self.retries,
                        backoff=self.backoff,
                        response_format=verdict_format() if enforce else None,
                    )
            except InvalidRequestError as exc:
                if not (enforce and exc.param == "response_format"):
                    raise
                self.judge_json = False  # this judge cannot be held to the schema: not a try
                continue
            cost += reply.cost
            replies.append(reply)
            if parse_verdict(reply.text) is not None:
                break
        reply = replies[-1]
        return reply, cost

    async def row(self, index: int, item: EvalItem) -> EvalRow:
        row = EvalRow(index, item.prompt, item.reference, item.id, item.category)
        try:
            cand, ref = await _gather(
                [self.ask(self.candidate, item.messages), self.ask(self.reference, item.messages)]
            )
            row.candidate, row.reference = cand, ref
            # The same pair twice, the candidate first as A and then as B: position bias cancels.
            orders = [(cand.text, ref.text), (ref.text, cand.text)]
            (first, cost1), (swapped, cost2) = await _gather(
                [self.verdict(item.prompt, a, b) for a, b in orders]
            )
        except FATAL:
            raise
        except APIError as exc:
            row.error = f"{type(exc).__name__}: {exc}"
            return row
        row.judge_replies = [first.text, swapped.text]
        row.verdicts = [parse_verdict(first.text), parse_verdict(swapped.text)]
        row.score = combine(row.verdicts[0], row.verdicts[1])
        row.judge_cost = cost1 + cost2
        if item.reference is not None:
            row.metrics = {
                "candidate": reference_metrics(cand.text, item.reference),
                "reference": reference_metrics(ref.text, item.reference),
            }
        return row


async def evaluate_pair(
    client: ChatClient,
    candidate: str,
    reference: str,
    judge: str,
    prompts: Sequence[EvalItem | str],
    *,
    concurrency: int = 4,
    temperature: float = 0.0,
    max_tokens: int = 512,
    judge_max_tokens: int = 512,
    judge_json: bool = True,
    seed: int = 0,
    prices: dict[str, Price] | None = None,
    resamples: int = 2000,
    retries: int = 4,
    backoff: float = 1.0,
    prompt_set: str = "custom",
    on_progress: Progress | None = None,
) -> EvalReport:
    """Evaluate ``candidate`` against ``reference`` on ``prompts``; see :class:`EvalReport`.

    An unknown model stops the run (``ModelNotFound``); any other failure on one prompt
    is recorded in its row and leaves that prompt without an outcome. ``concurrency``
    bounds the requests in flight; ``temperature`` and ``seed`` apply to every request,
    the judge's included; ``backoff`` is the first retry's delay in seconds.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    items = [_as_item(p) for p in prompts]
    pairing = _Pairing(
        client, candidate, reference, judge, max_tokens, judge_max_tokens, judge_json,
        temperature, seed, prices or {}, retries, backoff, asyncio.Semaphore(concurrency),
    )  # fmt: skip
    # Prompts in flight: without this bound every prompt's answers would queue ahead of the
    # first judge call, and nothing would finish until everything had been answered.
    started = asyncio.Semaphore(concurrency)
    done = 0

    async def one(index: int, item: EvalItem) -> EvalRow:
        nonlocal done
        async with started:
            row = await pairing.row(index, item)
        done += 1
        if on_progress is not None:
            on_progress(done, len(items))
        return row

    rows = await _gather([one(i, item) for i, item in enumerate(items)])
    settings = {
        "temperature": temperature,
        "max_tokens": max_tokens,
        "judge_max_tokens": judge_max_tokens,
        "judge_json": judge_json,
        "seed": seed,
        "resamples": resamples,
        "concurrency": concurrency,
    }
    return _report(candidate, reference, judge, prompt_set, rows, settings, resamples, seed)


async def _gather(coros: Sequence[Coroutine[Any, Any, T]]) -> list[T]:
    """Every result in order; on the first error the others are cancelled and it is raised."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _report(
    candidate: str,
    reference: str,
    judge: str,
    prompt_set: str,
    rows: list[EvalRow],
    settings: dict[str, Any],
    resamples: int,
    seed: int,
) -> EvalReport:
    judged = [r for r in rows if r.score is not None and r.candidate and r.reference]
    scores = [r.score for r in judged if r.score is not None]
    ci = bootstrap_ci(scores, resamples=resamples, seed=seed)
    lc = lc_win_rate(
        scores,
        [r.candidate.length for r in judged if r.candidate],
        [r.reference.length for r in judged if r.reference],
    )
    summary = {}
    for side in ("candidate", "reference"):
        answers = [a for r in rows if (a := getattr(r, side)) is not None]
        metrics = [r.metrics[side] for r in rows if side in r.metrics]
        summary[side] = ModelSummary.of(answers, metrics)
    return EvalReport(
        candidate=candidate,
        reference=reference,
        judge=judge,
        prompt_set=prompt_set,
        n=len(scores),
        wins=sum(1 for s in scores if s == 1.0),
        ties=sum(1 for s in scores if s == 0.5),
        losses=sum(1 for s in scores if s == 0.0),
        win_rate=win_rate(scores),
        ci_low=ci[0] if ci else None,
        ci_high=ci[1] if ci else None,
        lc_win_rate=lc,
        unparsed=sum(1 for r in rows for v in r.verdicts if v is None),
        errors=sum(1 for r in rows if r.error),
        judge_cost=sum(r.judge_cost for r in rows),
        summary=summary,
        settings=settings,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        rows=rows,
    )


async def open_and_run_eval(
    settings: Settings,
    config: EvalConfig,
    base_url: str | None = None,
    api_key: str | None = None,
    on_progress: Progress | None = None,
    prompt_set: PromptSet | None = None,
) -> EvalRun:
    """:func:`run_eval` through a client of its own: the server at ``base_url``, else the
    catalog's models loaded in this process (closed again at the end). With
    ``config.record`` the judge's outcomes then join the arena's battles in the store.

    The whole run, as ``openclone eval`` and the ``eval`` job both drive it.
    """
    from openclone.routing.client import open_client

    client = await open_client(settings, base_url, api_key)
    try:
        report, paths = await run_eval(config, client, on_progress, prompt_set)
    finally:
        await client.aclose()
    recorded = record_battles(settings, report) if config.record else 0
    return EvalRun(report, paths, recorded)


def record_battles(settings: Settings, report: EvalReport) -> int:
    """Add the judge's outcomes to the arena's battles in the store; how many."""
    from openclone.store import open_store
    from openclone.store.votes import record_battle

    battles = battles_of(report)
    if not battles:
        return 0
    store = open_store(settings)
    try:
        for battle in battles:
            record_battle(store, battle)
    finally:
        store.close()
    return len(battles)


def battles_of(report: EvalReport) -> list[Battle]:
    """The judge's outcomes as arena battles (candidate is model a)."""
    winner = {1.0: "a", 0.0: "b", 0.5: "tie"}
    return [
        Battle(report.candidate, report.reference, winner[r.score], "judge")
        for r in report.rows
        if r.score is not None and report.candidate != report.reference
    ]


# ---- the recipe ------------------------------------------------------------------------


@dataclass
class EvalConfig:
    """One ``openclone eval`` run."""

    candidate: str
    """The model being evaluated (any name the client can reach)."""
    reference: str
    """What it is compared with: the teacher, or the current champion."""
    judge: str
    """The model that compares the two answers (any catalog model)."""
    out: Path
    """Folder for report.json, report.md and report.html."""
    prompts: str | None = None
    """A bundled set name (``general``) or an eval file; ignored when ``split_of`` is set."""
    split_of: Path | None = None
    """Evaluate on the held-out split of this training dataset instead."""
    fraction: float = 0.05
    """Held-out share for ``split_of`` (the trainer must hold out the same rows)."""
    split_seed: int = 0
    """Seed of the held-out split's hash."""
    limit: int | None = None
    """Use only the first N prompts (the bundled set is ordered to stay varied)."""
    concurrency: int = 4
    """Requests in flight at once, answers and judge together."""
    max_tokens: int = 512
    """Answer length limit of candidate and reference."""
    judge_max_tokens: int = 512
    """Length limit of each judge reply (reasoning plus the verdict line)."""
    judge_json: bool = True
    """Hold the judge to a JSON verdict with its engine's JSON-schema support (off by itself
    for an engine that cannot); a small judge otherwise often leaves its verdict unreadable."""
    temperature: float = 0.0
    """Sampling temperature of candidate and reference; the judge always uses it too."""
    seed: int = 0
    """Sampling seed of every request, and of the bootstrap."""
    resamples: int = 2000
    """Bootstrap resamples for the confidence interval."""
    prices: dict[str, Price] = field(default_factory=dict)
    """USD per million input/output tokens, by model name; unlisted models cost 0."""
    retries: int = 4
    """Retries of a rate-limited or transiently failing request."""
    record: bool = True
    """Add the judge's outcomes to the arena's battles in the store (:func:`open_and_run_eval`)."""

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.max_tokens < 1 or self.judge_max_tokens < 1:
            raise ValueError("max_tokens and judge_max_tokens must be at least 1")
        if not 0 < self.fraction < 1:
            raise ValueError(f"fraction must be between 0 and 1, got {self.fraction}")
        if self.limit is not None and self.limit < 1:
            raise ValueError("limit must be at least 1")
        if self.resamples < 1:
            raise ValueError("resamples must be at least 1")
        if not math.isfinite(self.temperature) or not 0 <= self.temperature <= 2:
            raise ValueError("temperature must be between 0 and 2")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (a job's spec): paths as text, prices as [input, output]."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["out"] = str(self.out)
        out["split_of"] = str(self.split_of) if self.split_of is not None else None
        out["prices"] = {m: [p.input, p.output] for m, p in self.prices.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalConfig:
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        values["out"] = Path(values["out"])
        if values.get("split_of") is not None:
            values["split_of"] = Path(values["split_of"])
        values["prices"] = {m: Price(*p) for m, p in values.get("prices", {}).items()}
        return cls(**values)

    def load_prompts(self) -> PromptSet:
        """The eval set this run uses; a DatasetFormatError names a bad file and line."""
        if self.split_of is not None:
            return held_out_set(self.split_of, self.fraction, self.split_seed, self.limit)
        return load_prompt_set(self.prompts, self.limit)


@dataclass
class EvalJob:
    """An evaluation as a background job: the run, and where the worker finds the models."""

    config: EvalConfig
    settings_file: Path | None = None
    """The openclone.toml to read (default: ``OPENCLONE_*`` and the defaults)."""
    base_url: str | None = None
    """A running server to ask instead of the catalog's models in process."""

    def to_spec(self) -> dict[str, Any]:
        """The job's spec, every path absolute: the worker runs in another directory."""
        spec = self.config.to_dict()
        spec["out"] = str(self.config.out.resolve())
        if self.config.split_of is not None:
            spec["split_of"] = str(self.config.split_of.resolve())
        if self.config.prompts and Path(self.config.prompts).exists():  # a file, not a set's name
            spec["prompts"] = str(Path(self.config.prompts).resolve())
        settings_file = str(self.settings_file.resolve()) if self.settings_file else None
        return {"eval": spec, "config": settings_file, "base_url": self.base_url}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> EvalJob:
        # A job started before ``record`` joined the config kept it beside it.
        config = EvalConfig.from_dict({"record": spec.get("record", True), **spec["eval"]})
        settings_file = Path(spec["config"]) if spec.get("config") else None
        return cls(config, settings_file, spec.get("base_url"))


@dataclass
class EvalRun:
    """What :func:`open_and_run_eval` did."""

    report: EvalReport
    paths: dict[str, Path]
    """The written reports (and battles.jsonl) by kind."""
    recorded: int
    """Battles added to the store's arena (0 without ``record``)."""


def default_out(home: Path, candidate: str, reference: str) -> Path:
    """``$OPENCLONE_HOME/evals/<time>-<candidate>-vs-<reference>``."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{candidate}-vs-{reference}")
    return home / "evals" / f"{stamp}-{safe}"


async def run_eval(
    config: EvalConfig,
    client: ChatClient,
    on_progress: Progress | None = None,
    prompt_set: PromptSet | None = None,
) -> tuple[EvalReport, dict[str, Path]]:
    """Evaluate and write the reports (and the judge's battles) into ``config.out``.

    ``prompt_set`` is ``config.load_prompts()`` when given (load it first to fail fast).
    Returns the report and the written paths by kind.
    """
    from openclone.evaluate.report import write_reports

    pset = prompt_set or config.load_prompts()
    report = await evaluate_pair(
        client,
        config.candidate,
        config.reference,
        config.judge,
        pset.items,
        concurrency=config.concurrency,
        temperature=config.temperature,
        max_tokens=config.max_tokens,
        judge_max_tokens=config.judge_max_tokens,
        judge_json=config.judge_json,
        seed=config.seed,
        prices=config.prices,
        resamples=config.resamples,
        retries=config.retries,
        prompt_set=pset.name,
        on_progress=on_progress,
    )
    paths = write_reports(report, config.out)
    # The judge's outcomes as arena battles, readable by `openclone arena leaderboard`.
    paths["battles"] = config.out / "battles.jsonl"
    paths["battles"].unlink(missing_ok=True)
    append_battles(paths["battles"], battles_of(report))
    return report, paths
