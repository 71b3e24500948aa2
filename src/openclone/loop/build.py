"""The model steps: the teacher answers the curated prompts, the candidate learns them.

Both continue rather than repeat: distill appends rows as it goes and skips prompts it
already answered (so a crash mid-distill pays only for what was not yet bought), and
training resumes from its newest checkpoint. Once a step is recorded done the runner
never calls it again, so a finished distill is never paid for twice. Nor is an answer an
earlier run of the loop already bought: distill starts from those (loop/reuse.py), so a
retrain after an erasure asks the teacher only for what it had not answered.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openclone.config import BUNDLED_MODEL_NAME, Settings, bundled_model_path
from openclone.errors import ConfigError
from openclone.files import file_sha256
from openclone.loop.config import LoopConfig, LoopError
from openclone.loop.context import StepContext, StepResult
from openclone.loop.reuse import reused_rows, seed, teacher_key
from openclone.loop.taint import register_file

if TYPE_CHECKING:
    from openclone.distill.run import DistillResult

__all__ = ["distill", "student_base", "train"]


def student_base(settings: Settings, name: str) -> tuple[str, str]:
    """(path, catalog name) of the base the candidate is trained on."""
    from openclone.train.config import default_base_name

    entry = settings.model(name)
    path = entry.params.get("model_path") if entry is not None else None
    if path:
        return str(path), name
    if name == BUNDLED_MODEL_NAME:
        return str(bundled_model_path()), name
    if Path(name).expanduser().exists():
        return name, default_base_name(name)
    raise ConfigError(
        f"student_base {name!r} is neither a path nor a catalog model with a model_path"
    )


def _teacher_cost(cfg: LoopConfig, result: DistillResult) -> float:
    """What the teacher cost so far: its tokens x ``[prices]``, plus its own machine's time
    when it is a local one with a price per hour (both count across resumed sessions)."""
    return result.account.cost_usd + cfg.teacher_cost_per_hour * result.wall_seconds / 3600


def _next_count(cfg: LoopConfig, result: DistillResult | None, reused: int = 0) -> int:
    """Rows the next distill session may aim for: all of the budget without a dollar
    limit; with one, a first row alone (nothing says yet what a row costs: a batch could
    spend the limit several times over), then a batch of ``concurrency`` at most, fewer when
    the mean cost of a row so far says more would cross the limit (0: stop). The overshoot
    is at most what the rows in flight cost above that mean. ``reused`` rows came free from
    earlier runs: the mean is over the rows bought."""
    wanted = cfg.budget.examples
    limit = cfg.budget.teacher_usd
    if limit is None:
        return wanted
    kept = result.kept if result is not None else reused
    spent = _teacher_cost(cfg, result) if result is not None else 0.0
    if spent >= limit:
        return kept
    bought = kept - reused
    if bought <= 0:
        return min(wanted, kept + 1)
    per_row = spent / bought
    if per_row == 0:
        return wanted  # a free teacher cannot cross the limit
    return min(wanted, kept + min(cfg.concurrency, int((limit - spent) // per_row)))


def distill(ctx: StepContext) -> StepResult:
    from openclone.distill.recipe import DistillRequest, plan, run_plan

    cfg, settings = ctx.config, ctx.settings
    limit = cfg.budget.teacher_usd
    ctx.say(f"distilling up to {cfg.budget.examples} answers from {cfg.teacher}"
            + (f" for at most ${limit:.4f}" if limit is not None else ""))  # fmt: skip
    result: DistillResult | None = None
    request = DistillRequest(
        out=str(ctx.run_dir / "distilled.jsonl"),
        count=cfg.budget.examples,
        teacher=cfg.teacher,
        prompts=ctx.output("curate", "prompts"),
        answer_max_tokens=cfg.answer_max_tokens,
        concurrency=cfg.concurrency,
        config=str(settings.config_file) if settings.config_file else None,
    )
    key = teacher_key(ctx, request)
    out, prompts = Path(request.out), Path(str(request.prompts))
    seed(ctx, out, prompts, key, cfg.budget.examples)  # answers earlier runs already bought
    reused = reused_rows(out)  # those of a resumed step's first session too
    # With a dollar budget, distill in batches and look at the bill between them; the rows
    # and the bill carry over from batch to batch (and across a crash) in the dataset's
    # state file, so each batch only adds rows.
    while True:
        target = _next_count(cfg, result, reused)
        if result is not None and target <= result.kept:
            break
        request.count = target
        before = result.kept if result is not None else -1
        result = asyncio.run(run_plan(plan(request)))
        if result.status != "complete" or result.kept == before or limit is None:
            break  # prompts ran out, the teacher wrote nothing new, or no batches needed
    account = result.account
    cost = _teacher_cost(cfg, result)
    # "complete" short of the examples: the last batch reached its target and the budget
    # allows no next one (other statuses mean the prompts or the teacher ran out).
    stopped = (
        limit is not None and result.status == "complete" and result.kept < cfg.budget.examples
    )
    reused = reused_rows(result.out)  # an erasure meanwhile may have removed some
    asked = account.requests.get("answer", 0)
    counts = {
        "rows": result.kept,
        "reused": reused,
        "asked": asked,
        "dropped": sum(result.dropped.values()),
        "requests": sum(account.requests.values()),
        "prompt_tokens": account.prompt_tokens,
        "completion_tokens": account.completion_tokens,
    }
    if result.kept == 0:
        raise LoopError(
            f"the teacher {cfg.teacher!r} wrote no usable answer ({result.status}; see "
            f"{result.card_md})"
        )
    register_file(ctx, Path(result.out))  # its rows carry capture ids: an erasure reaches it
    outputs = {"dataset": str(result.out), "sha256": file_sha256(result.out),
               "card": str(result.card_md), "status": result.status,
               "teacher_usd": round(cost, 6), "teacher_budget_usd": limit,
               "reused": reused, "asked": asked, "teacher_key": key,
               "budget_stop": None}  # fmt: skip
    ctx.say(f"distilled {result.kept} answers: {reused} reused from earlier runs, {asked} "
            f"asked of the teacher (${cost:.4f})")  # fmt: skip
    if stopped:
        outputs["budget_stop"] = (
            f"teacher budget: stopped at {result.kept} of {cfg.budget.examples} answers, "
            f"${cost:.4f} of ${limit:.4f}"
        )
        ctx.say(str(outputs["budget_stop"]))
    return StepResult(counts, outputs, cost_usd=cost)


class _HoursBudget:
    """A ``TrainerCallback`` (made on use: transformers loads slowly) that ends training at
    the end of the step that crosses ``hours`` of training time; the model is saved and
    registered as trained so far. The time spent is kept in ``ledger`` at each step, so a
    resumed attempt (after a crash or a stop) gets what is left, not the hours afresh."""

    def __init__(self, hours: float, ledger: Path) -> None:
        from transformers import TrainerCallback

        self.hit = False
        try:
            before = float(json.loads(ledger.read_text())["seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            before = 0.0  # a first attempt, or a ledger cut short by a crash
        started = time.monotonic()
        outer = self

        class Callback(TrainerCallback):
            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                spent = before + time.monotonic() - started
                ledger.parent.mkdir(parents=True, exist_ok=True)
                tmp = ledger.with_suffix(".tmp")
                tmp.write_text(json.dumps({"seconds": spent}))
                tmp.replace(ledger)  # whole or not at all: a crash mid-write keeps the last
                if spent >= hours * 3600:
                    outer.hit = True
                    control.should_training_stop = True

        self.callback = Callback()


def train(ctx: StepContext) -> StepResult:
    from openclone.registry.trained import register_run
    from openclone.store.trained import record_path
    from openclone.train.config import TrainConfig
    from openclone.train.sft import SFTRunner

    os.environ.setdefault("TQDM_DISABLE", "1")  # library bars would fill the run's output
    cfg, home = ctx.config, ctx.settings.home
    name = f"{cfg.name}-r{ctx.run.number}-{ctx.run.id[:6]}"
    run_dir = home / "models" / name
    metrics: dict[str, object] = {}
    stop: str | None = None
    if not record_path(name, home).is_file():  # else it finished before a crash: register it
        base, base_name = student_base(ctx.settings, cfg.student_base)
        # The reviewed rows when the loop has a review gate, else the distilled ones.
        dataset = ctx.outputs.get("review", {}).get("dataset") or ctx.output("distill", "dataset")
        config = TrainConfig(
            dataset=Path(dataset),
            name=name,
            register=cfg.model,
            base=base,
            base_name=base_name,
            output_dir=run_dir,
            home=home,
            max_steps=cfg.budget.train_steps,
            cost_per_hour=cfg.cost_per_hour,
            resume=any((run_dir / "checkpoints").glob("checkpoint-*")),
        )
        ctx.say(f"training {name} on {base_name} for {cfg.budget.train_steps} steps")
        hours = cfg.budget.gpu_hours
        budget = (
            _HoursBudget(hours, ctx.run_dir / "train-hours.json") if hours is not None else None
        )
        result = SFTRunner(config, callbacks=[budget.callback] if budget else None).run()
        if budget is not None and budget.hit:
            stop = f"training budget: stopped at step {result.final_step} after {hours} h"
            ctx.say(stop)
        if result.stopped:
            raise LoopError(f"training {name} stopped at step {result.final_step}")
        metrics = result.metrics
    versions = register_run(ctx.store, name, cfg.model, home=home)
    candidate = versions[-1]
    ctx.say(f"registered {candidate.pinned} (a candidate)")
    counts = {"steps": metrics.get("final_step", cfg.budget.train_steps)}
    outputs = {
        "run": name,
        "candidate": candidate.pinned,
        "version": candidate.version,
        "dataset_sha256": candidate.lineage.get("dataset_sha256"),
        "train_loss": metrics.get("train_loss"),
        "budget_stop": stop,
    }
    cost = metrics.get("estimated_cost")
    return StepResult(counts, outputs, cost_usd=float(cost) if isinstance(cost, int | float) else 0.0,
                      candidate=candidate.pinned)  # fmt: skip
