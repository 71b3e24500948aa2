"""The judging steps: evaluate the candidate, then let the registry's gate decide.

The candidate answers the eval set beside the incumbent (the version the loop's model
serves now, when there is one) and beside the teacher; the judge compares each pair in
both orders. The eval set is a held-out slice of this run's fresh captures (up to half
of ``budget.eval_prompts``) plus the fixed set, so a candidate is judged both on the
traffic it is meant for and on prompts that stay the same from run to run.

Promotion goes through :func:`openclone.registry.versions.promote`, the same gate as
``openclone promote``; the refusal or promotion is recorded there with its evidence.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

from openclone.errors import ModelNotFound
from openclone.evaluate.runner import EvalConfig, record_battles, run_eval
from openclone.evaluate.sets import EvalItem, PromptSet, load_prompt_set, read_items
from openclone.files import file_sha256
from openclone.loop.config import LoopError
from openclone.loop.context import Decision, StepContext, StepResult
from openclone.loop.taint import settle
from openclone.registry.versions import PromotionRefused, get_version, promote
from openclone.store.derived import register_report, row_capture_id

__all__ = ["decide", "eval_set", "evaluate"]


def eval_set(ctx: StepContext) -> PromptSet:
    """Held-out captures (at most half) topped up from the fixed set to the budget."""
    want = ctx.config.budget.eval_prompts
    held_file = Path(ctx.output("curate", "held_out"))
    held: list[EvalItem] = read_items(held_file) if held_file.read_text().strip() else []
    for item, capture_id in zip(held, _capture_ids(held_file), strict=True):
        item.id = capture_id  # its report row carries it: the lineage an erasure follows
    from_held = min(len(held), math.ceil(want / 2))
    fixed = load_prompt_set(ctx.config.eval_set, want - from_held).items
    items = held[:from_held] + fixed
    items += held[from_held : from_held + want - len(items)]  # a small fixed set: more captures
    name = f"{len(items) - len(fixed)} held-out captures + {len(fixed)} of {ctx.config.eval_set}"
    return PromptSet(name, items)


def _capture_ids(path: Path) -> list[str | None]:
    """Each row's ``metadata.capture_id``, in the rows' order (as ``read_items`` reads them)."""
    text = path.read_text(encoding="utf-8-sig")
    return [row_capture_id(line) for line in text.split("\n") if line.strip()]


def _register(ctx: StepContext, path: Path, report: dict[str, Any]) -> None:
    """Record a report for erasure: its rows whose id is not the fixed set's are held-out
    captures (read from the report, so a row an erasure removed from heldout.jsonl since
    the report was written is still found)."""
    fixed = {i.id for i in load_prompt_set(ctx.config.eval_set).items}
    rows = report.get("rows") or []
    ids = {r["id"] for r in rows if isinstance(r.get("id"), str) and r["id"] not in fixed}
    try:
        register_report(ctx.store, path, ids, actor=f"loop:{ctx.config.name}",
                        source={"loop": ctx.config.name, "run": ctx.run.number})  # fmt: skip
    except OSError as exc:  # not registered, an erasure would miss it: the step must fail
        raise LoopError(f"cannot register {path} for erasure: {exc}") from exc


def _incumbent(ctx: StepContext) -> str | None:
    try:
        return get_version(ctx.store, ctx.config.model).pinned
    except ModelNotFound:
        return None


def _summary(report: dict[str, Any], path: Path) -> dict[str, Any]:
    keys = ("candidate", "reference", "n", "win_rate", "ci_low", "ci_high", "unparsed", "errors")
    return {**{k: report.get(k) for k in keys}, "report": str(path), "sha256": file_sha256(path)}


def _cost(report: dict[str, Any]) -> float:
    sides = report.get("summary") or {}
    answers = sum(float((sides.get(s) or {}).get("cost_total") or 0) for s in sides)
    return answers + float(report.get("judge_cost") or 0)


async def _compare(ctx: StepContext, pairs: dict[str, str], pset: PromptSet) -> dict[str, Path]:
    """Run each evaluation not already written by an earlier attempt; their report.json."""
    from openclone.routing.client import open_client

    cfg, candidate = ctx.config, ctx.output("train", "candidate")
    paths = {}
    todo = {}
    for key, reference in pairs.items():
        path = ctx.run_dir / f"eval-vs-{key}" / "report.json"
        paths[key] = path
        if path.is_file():
            done = json.loads(path.read_text(encoding="utf-8"))
            if (done.get("candidate"), done.get("reference")) == (candidate, reference):
                continue
        todo[key] = EvalConfig(
            candidate=candidate,
            reference=reference,
            judge=cfg.judge_model,
            out=path.parent,
            concurrency=cfg.concurrency,
            max_tokens=cfg.eval_max_tokens,
            judge_max_tokens=cfg.eval_max_tokens,
            judge_json=cfg.judge_json,
            prices=dict(ctx.settings.prices),
        )
    if not todo:
        return paths
    client = await open_client(ctx.settings)
    try:
        for key, config in todo.items():
            ctx.say(f"judging {config.candidate} against {config.reference} ({key})")
            report, _ = await run_eval(config, client, prompt_set=pset)
            record_battles(ctx.settings, report)
            ctx.say(report.verdict_line())
    finally:
        await client.aclose()
    return paths


def evaluate(ctx: StepContext) -> StepResult:
    incumbent = _incumbent(ctx)
    pairs = {"incumbent": incumbent} if incumbent else {}
    pairs["teacher"] = ctx.config.teacher
    pset = eval_set(ctx)
    paths = asyncio.run(_compare(ctx, pairs, pset))
    for path in paths.values():
        _register(ctx, path, json.loads(path.read_text(encoding="utf-8")))
    # Read after: registering drops the rows of captures erased meanwhile.
    reports = {k: json.loads(p.read_text(encoding="utf-8")) for k, p in paths.items()}
    outputs = {
        "prompt_set": pset.name,
        "incumbent": incumbent,
        "reports": {k: _summary(r, paths[k]) for k, r in reports.items()},
    }
    counts = {"prompts": len(pset.items)}
    for key, report in reports.items():
        counts[f"judged_vs_{key}"] = report.get("n", 0)
        counts[f"unparsed_vs_{key}"] = report.get("unparsed", 0)
    return StepResult(counts, outputs, cost_usd=sum(_cost(r) for r in reports.values()))


def _rate(summary: dict[str, Any] | None) -> str:
    if not summary or summary.get("win_rate") is None:
        return "n/a"
    return f"{summary['win_rate']:.0%} (n={summary.get('n')})"


def gate_evidence(ctx: StepContext) -> dict[str, Any]:
    """What the gate weighs, as :func:`~openclone.registry.versions.promote`'s keywords:
    the evaluation's reports, the shadow's live-traffic win rate when it judged pairs, and
    the canary's outcome when one ran."""
    cfg = ctx.config
    summaries: dict[str, dict[str, Any]] = ctx.output("evaluate", "reports")

    def full(key: str) -> dict[str, Any] | None:
        if key not in summaries:
            return None
        data: dict[str, Any] = json.loads(Path(summaries[key]["report"]).read_text("utf-8"))
        return data

    shadow = ctx.outputs.get("shadow") or {}
    canary = ctx.outputs.get("canary") or {}
    return {
        "vs_champion": full("incumbent"),
        "vs_teacher": full("teacher"),
        "teacher_margin": cfg.teacher_margin,
        "vs_live": shadow if shadow.get("status") == "judged" else None,
        "min_live_win_rate": cfg.min_shadow_win_rate,
        "canary": {k: canary.get(k) for k in ("state", "reason", "arms", "split", "quality")}
        if canary.get("split")
        else None,
    }


def _live(ctx: StepContext) -> str:
    """The live-traffic part of the decision's reason."""
    shadow = ctx.outputs.get("shadow") or {}
    canary = ctx.outputs.get("canary") or {}
    parts = []
    if shadow.get("status") == "judged":
        parts.append(f"live {_rate(shadow)}")
    elif shadow.get("status") not in (None, "off"):
        parts.append(f"shadow {shadow['status']}")
    if canary.get("status") not in (None, "off"):
        parts.append(f"canary {canary['status']}")
    return "".join(f", {p}" for p in parts)


def _end_splits(ctx: StepContext, candidate: str, why: str) -> None:
    """The candidate's canary (or shadow) stops once the decision is made."""
    from openclone.store.splits import KINDS, end_split, find_active

    for kind in KINDS:
        split = find_active(ctx.store, ctx.config.model, kind)
        if split is not None and split.candidate == candidate:
            end_split(ctx.store, split.id, "finished", why, actor=f"loop:{ctx.config.name}")


def decide(ctx: StepContext) -> StepResult:
    cfg = ctx.config
    candidate, version = ctx.output("train", "candidate"), int(ctx.output("train", "version"))
    summaries: dict[str, dict[str, Any]] = ctx.output("evaluate", "reports")
    evidence = gate_evidence(ctx)
    rates = f"vs incumbent {_rate(summaries.get('incumbent'))}, vs teacher {_rate(summaries.get('teacher'))}"
    rates += _live(ctx)
    counts = {"version": version}
    try:
        champion = get_version(ctx.store, cfg.model).version
    except ModelNotFound:
        champion = None
    if champion == version:  # promoted before a crash cut this step short
        _end_splits(ctx, candidate, "promoted")
        settle(ctx, candidate)  # archive what erased data tainted (loop/taint.py)
        decision = Decision("promote", f"{candidate} serves {cfg.model} ({rates})")
        return StepResult(counts, {"reasons": []}, decision=decision, candidate=candidate)
    try:
        promote(ctx.store, cfg.model, version, **evidence, actor=f"loop:{cfg.name}")
    except PromotionRefused as exc:
        _end_splits(ctx, candidate, "refused")
        reasons = exc.result.reasons
        decision = Decision("reject", f"{candidate}: {'; '.join(reasons)} ({rates})")
        return StepResult(counts, {"reasons": reasons}, decision=decision, candidate=candidate)
    _end_splits(ctx, candidate, "promoted")
    settle(ctx, candidate)  # archive what erased data tainted (loop/taint.py)
    decision = Decision("promote", f"{candidate} now serves {cfg.model} ({rates})")
    return StepResult(counts, {"reasons": []}, decision=decision, candidate=candidate)
