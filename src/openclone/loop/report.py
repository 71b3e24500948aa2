"""A run's report: its steps (state, counts, time, cost) and its decision, as Markdown
and JSON in the run's directory; the same table ``openclone loop history`` shows."""

from __future__ import annotations

import json

from openclone.loop.context import StepContext, StepResult
from openclone.loop.state import RunInfo, get_run

__all__ = ["render_markdown", "report"]


def _counts(counts: dict[str, object]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items() if v not in (0, None, "")) or "-"


def render_markdown(run: RunInfo) -> str:
    lines = [
        f"# Loop {run.loop}, run {run.number}",
        "",
        f"- decision: **{run.decision or 'none yet'}**",
        f"- candidate: {run.candidate or '-'}",
        f"- cost: ${run.cost_usd:.4f}",
        f"- started: {run.to_dict()['created']}",
        "",
        "| step | state | counts | seconds | cost |",
        "| --- | --- | --- | --- | --- |",
    ]
    for step in run.steps:
        info = step.to_dict()
        seconds = "-" if info["seconds"] is None else f"{info['seconds']:.1f}"
        lines.append(
            f"| {step.name} | {step.state} | {_counts(step.counts)} | {seconds} | "
            f"${step.cost_usd:.4f} |"
        )
    return "\n".join(lines) + "\n"


def report(ctx: StepContext) -> StepResult:
    run = get_run(ctx.store, ctx.run.id)
    md, js = ctx.run_dir / "report.md", ctx.run_dir / "report.json"
    md.write_text(render_markdown(run), encoding="utf-8")
    js.write_text(json.dumps(run.to_dict(), indent=2) + "\n", encoding="utf-8")
    return StepResult(outputs={"markdown": str(md), "json": str(js)})
