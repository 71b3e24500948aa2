"""The data steps: collect the tenant's new consented captures, then curate them.

Collect exports the captures since the last run that used its data (a run that ended
with "not enough data" leaves them for the next), as ``openclone captures export``
would: consented, successful chats only, redacted by the tenant's policy (at write for
``store`` tenants, here for ``export`` ones), and recorded as an export, so an erasure
later finds the rows. When an erasure tainted the promoted version, it collects again
from where that version's run began, without the erased captures (loop/taint.py).
Curate's prompts and held-out set keep each row's capture id and are registered too. Curate keeps one of each prompt (exact, then Alpaca's ROUGE-L
near-duplicate filter), drops what a text teacher cannot answer, and holds a slice out
of training for the evaluation.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from openclone.data.dedupe import dedupe
from openclone.distill.captures import prompt_id, prompt_of
from openclone.evaluate.sets import split_rows
from openclone.loop.context import Decision, StepContext, StepResult
from openclone.loop.state import last_used_until
from openclone.loop.taint import register_file, retrain
from openclone.store.export import CaptureFilter, export_captures

__all__ = ["collect", "curate"]


def _day(t: float | None) -> str:
    if t is None:
        return "the start"
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _not_enough(ctx: StepContext, have: int, what: str, since: float | None) -> Decision:
    cfg = ctx.config
    return Decision(
        "skip",
        f"not enough data ({have} {what} of tenant {cfg.tenant!r} since {_day(since)}, "
        f"need {cfg.min_captures})",
    )


def collect(ctx: StepContext) -> StepResult:
    cfg = ctx.config
    since = last_used_until(ctx.store, cfg.name)
    replacing = retrain(ctx)
    if replacing is not None:  # its window again, less what was erased
        since = replacing.since
        ctx.say(f"{replacing.version} was trained on erased data: retraining without it")
    until = ctx.run.created  # fixed when the run began, so a resumed collect sees the same
    out = ctx.run_dir / "captures.jsonl"
    filters = CaptureFilter(
        tenant=cfg.tenant,
        model=cfg.capture_model,
        since=since,
        until=until,
        min_chars=cfg.min_chars,
    )
    result = export_captures(
        ctx.store, out, filters, actor=f"loop:{cfg.name}", redactor=ctx.settings.redactor
    )
    counts = {"captures": result.rows, **{k: v for k, v in result.skipped.items()}}
    outputs = {"since": since, "until": until, "file": str(out), "export": result.id,
               "sha256": result.sha256,
               "retrains": replacing.version if replacing else None}  # fmt: skip
    ctx.say(f"collected {result.rows} consented captures since {_day(since)}")
    decision = None
    if result.rows < cfg.min_captures:
        decision = _not_enough(ctx, result.rows, "new consented captures", since)
    return StepResult(counts, outputs, decision=decision)


def _question(prompt: list[dict[str, Any]]) -> str | None:
    """The last user turn's text; None when a text-only teacher cannot read the prompt."""
    users = [m for m in prompt if m.get("role") == "user"]
    if not users:
        return None
    content = users[-1].get("content")
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" for p in content
    ):
        content = "\n".join(str(p.get("text") or "") for p in content)
    return content if isinstance(content, str) and content.strip() else None


Prompt = tuple[list[dict[str, Any]], str | None]  # messages, and the capture they came from


def _write(ctx: StepContext, path: Path, prompts: list[Prompt]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for prompt, capture_id in prompts:
            row: dict[str, Any] = {"messages": prompt}
            if capture_id is not None:  # the lineage an erasure follows to this row
                row["metadata"] = {"capture_id": capture_id}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    register_file(ctx, path)


def curate(ctx: StepContext) -> StepResult:
    cfg = ctx.config
    rows = []
    with Path(ctx.output("collect", "file")).open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    counts = {"captures": len(rows), "not_text": 0, "duplicates": 0, "near_duplicates": 0}
    seen: set[str] = set()
    prompts: list[Prompt] = []
    questions = []
    for row in rows:
        prompt = prompt_of(row["messages"])  # the captured answer is the one being replaced
        question = _question(prompt)
        if question is None:
            counts["not_text"] += 1
            continue
        pid = prompt_id(prompt)
        if pid in seen:
            counts["duplicates"] += 1
            continue
        seen.add(pid)
        prompts.append((prompt, (row.get("metadata") or {}).get("capture_id")))
        questions.append(question)
    kept = dedupe(questions, cfg.dedupe_threshold)
    counts["near_duplicates"] = kept.count(False)
    unique = [p for p, keep in zip(prompts, kept, strict=True) if keep]
    # The split hashes each prompt, so a prompt lands on the same side in every run.
    train, held = split_rows(unique, cfg.holdout, key=lambda p: json.dumps(p[0], sort_keys=True))
    counts.update(held_out=len(held), prompts=len(train))
    prompts_file, held_file = ctx.run_dir / "prompts.jsonl", ctx.run_dir / "heldout.jsonl"
    _write(ctx, prompts_file, train)
    _write(ctx, held_file, held)
    ctx.say(
        f"curated {len(unique)} distinct prompts: {len(train)} to distill, {len(held)} held out"
    )
    decision = None
    if len(unique) < cfg.min_captures or not train:
        decision = _not_enough(
            ctx, len(unique), "distinct usable prompts", ctx.output("collect", "since")
        )
    return StepResult(counts, {"prompts": str(prompts_file), "held_out": str(held_file)},
                      decision=decision)  # fmt: skip
