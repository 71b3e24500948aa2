"""A run's report: its steps (state, counts, time, cost) and its decision, as Markdown
and JSON in the run's directory; the same table ``openclone loop history`` shows, plus
the run's spend, any budget stop and the model's cost crossover."""

from __future__ import annotations

import json
from typing import Any

from openclone.loop.context import StepContext, StepResult
from openclone.loop.costs import Crossover, crossover, run_spend
from openclone.loop.state import RunInfo, get_run, list_runs

__all__ = ["render_markdown", "report"]


def _counts(counts: dict[str, object]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items() if v not in (0, None, "")) or "-"


def _money(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"${value:.4g}{unit}"


def _costs(run: RunInfo, costs: Crossover | None) -> list[str]:
    spend = run_spend(run)
    lines = [f"- spend: teacher ${spend['teacher_usd']:.4f}, training ${spend['training_usd']:.4f}"]
    for name in ("distill", "train"):
        step = run.step(name)
        stop = step.outputs.get("budget_stop") if step is not None else None
        if stop:
            lines.append(f"- budget: {stop}")
    if costs is not None:
        even = costs.break_even_tokens_per_day
        lines.append(
            f"- cost crossover ({costs.model}): serving {_money(costs.serving_usd_per_1m, '/1M')}"
            f" vs API {_money(costs.api_usd_per_1m, '/1M')} "
            f"({costs.api_model or 'no [prices]'}) at {costs.tokens_per_day:.0f} tokens/day; "
            f"break-even {'-' if even is None else f'{even:.0f}'} tokens/day"
        )
    return lines


def render_markdown(run: RunInfo, costs: Crossover | None = None) -> str:
    lines = [
        f"# Loop {run.loop}, run {run.number}",
        "",
        f"- decision: **{run.decision or 'none yet'}**",
        f"- candidate: {run.candidate or '-'}",
        f"- cost: ${run.cost_usd:.4f}",
        f"- started: {run.to_dict()['created']}",
        *_costs(run, costs),
        *_live(run),
        "",
        "| step | state | counts | seconds | cost |",
        "| --- | --- | --- | --- | --- |",
    ]
    for step in run.steps:
        if step.name == "report":
            continue  # this report is that step: it is written before the step ends
        info = step.to_dict()
        seconds = "-" if info["seconds"] is None else f"{info['seconds']:.1f}"
        lines.append(
            f"| {step.name} | {step.state} | {_counts(step.counts)} | {seconds} | "
            f"${step.cost_usd:.4f} |"
        )
    return "\n".join(lines) + "\n"


def _live(run: RunInfo) -> list[str]:
    """The live-traffic lines: the shadow's win rate with its interval, the canary's end."""
    lines = []
    shadow = run.step("shadow")
    out = shadow.outputs if shadow is not None else {}
    if out.get("status") == "judged" and out.get("win_rate") is not None:
        lines.append(
            f"- live traffic (shadow): win rate {out['win_rate']:.1%} against "
            f"{out.get('reference')} (95% CI {out['ci_low']:.1%}-{out['ci_high']:.1%}, "
            f"n={out.get('n')}, shadow errors {out.get('shadow_errors', 0)})"
        )
    elif out.get("status") not in (None, "off"):
        lines.append(f"- live traffic (shadow): {out['status']}")
    canary = run.step("canary")
    out = canary.outputs if canary is not None else {}
    if out.get("status") not in (None, "off"):
        lines.append(f"- canary: {out['status']}")
    judged = out.get("quality") or {}
    if judged.get("win_rate") is not None:
        lines.append(
            f"- canary's own requests: win rate {judged['win_rate']:.1%} against the incumbent "
            f"(95% CI {judged['ci_low']:.1%}-{judged['ci_high']:.1%}, n={judged['n']})"
        )
    return lines


def report(ctx: StepContext) -> StepResult:
    run = get_run(ctx.store, ctx.run.id)
    costs = crossover(ctx.store, ctx.settings, ctx.config, list_runs(ctx.store, run.loop, 1))
    md, js = ctx.run_dir / "report.md", ctx.run_dir / "report.json"
    md.write_text(render_markdown(run, costs), encoding="utf-8")
    data: dict[str, Any] = {**run.to_dict(), "spend": run_spend(run), "costs": costs.to_dict()}
    js.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return StepResult(outputs={"markdown": str(md), "json": str(js)})
