"""The model steps: the teacher answers the curated prompts, the candidate learns them.

Both continue rather than repeat: distill appends rows as it goes and skips prompts it
already answered (so a crash mid-distill pays only for what was not yet bought), and
training resumes from its newest checkpoint. Once a step is recorded done the runner
never calls it again, so a finished distill is never paid for twice.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from openclone.config import BUNDLED_MODEL_NAME, Settings, bundled_model_path
from openclone.errors import ConfigError
from openclone.files import file_sha256
from openclone.loop.config import LoopError
from openclone.loop.context import StepContext, StepResult

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


def distill(ctx: StepContext) -> StepResult:
    from openclone.distill.recipe import DistillRequest, plan, run_plan

    cfg, settings = ctx.config, ctx.settings
    request = DistillRequest(
        out=str(ctx.run_dir / "distilled.jsonl"),
        count=cfg.budget.examples,
        teacher=cfg.teacher,
        prompts=ctx.output("curate", "prompts"),
        answer_max_tokens=cfg.answer_max_tokens,
        concurrency=cfg.concurrency,
        config=str(settings.config_file) if settings.config_file else None,
    )
    ctx.say(f"distilling up to {cfg.budget.examples} answers from {cfg.teacher}")
    result = asyncio.run(run_plan(plan(request)))
    account = result.account
    counts = {
        "rows": result.kept,
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
    outputs = {"dataset": str(result.out), "sha256": file_sha256(result.out),
               "card": str(result.card_md), "status": result.status}  # fmt: skip
    return StepResult(counts, outputs, cost_usd=account.cost_usd)


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
    if not record_path(name, home).is_file():  # else it finished before a crash: register it
        base, base_name = student_base(ctx.settings, cfg.student_base)
        config = TrainConfig(
            dataset=Path(ctx.output("distill", "dataset")),
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
        result = SFTRunner(config).run()
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
    }
    cost = metrics.get("estimated_cost")
    return StepResult(counts, outputs, cost_usd=float(cost) if isinstance(cost, int | float) else 0.0,
                      candidate=candidate.pinned)  # fmt: skip
