"""The live-traffic steps, between the evaluation and the decision: shadow, then canary.

**shadow** puts the candidate in shadow for the loop's model (``shadow_share`` of its chat
requests, up to ``shadow_pairs`` pairs; see :mod:`openclone.registry.splits`), waits for
the pairs gateways store (at most ``shadow_wait`` seconds after the shadow began), ends the
shadow and has the judge compare each shadow answer with the live one in both orders, as
the evaluation does: a live-traffic win rate against the incumbent with a 95% bootstrap
interval, in the step's record and the run's report. A shadow that failed where the live
model answered is a loss. No pair by the deadline: "skipped: no traffic".

**canary** (with ``canary_share``) runs when the gate agrees with the evidence so far: the
candidate serves a sticky share of the model's real requests until it has answered
``canary_requests`` (or ``canary_wait`` is over), while the gateways roll it back if its
error rate or latency regress. With ``canary_pairs`` the incumbent also answers that many
of the canary's chat requests in the background, the step judges each pair as it arrives,
and rolls the canary back when, at 5, 10, 20… judged pairs, its win rate is significantly
below 50% (the gate refuses one whose judged pairs say so at the end). The decision step
promotes (or refuses) and ends it.

Both steps remember their split in the run's directory, so a run continued after a crash
keeps the shadow or canary it started instead of starting another.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

from openclone.errors import APIError, InvalidRequestError, ModelNotFound
from openclone.evaluate.calls import ask
from openclone.evaluate.judge import (
    Verdict,
    combine,
    judge_messages,
    parse_verdict,
    verdict_format,
)
from openclone.evaluate.stats import bootstrap_ci, win_rate
from openclone.files import file_sha256
from openclone.loop.config import LoopError
from openclone.loop.context import StepContext, StepResult
from openclone.loop.judge import gate_evidence
from openclone.loop.state import get_run, is_paused
from openclone.registry.gate import MIN_CANARY_PAIRS, check
from openclone.registry.splits import ensure_split, start_canary, start_shadow
from openclone.store.splits import (
    PairInfo,
    SplitInfo,
    arm_totals,
    end_split,
    get_split,
    read_pairs,
    roll_back,
)

__all__ = ["canary", "shadow"]

_RETRY_TEMPERATURE = 0.7  # a second verdict, sampled: at temperature 0 the first comes back


def _text(body: dict[str, Any] | None) -> str | None:
    """The first choice's text of a chat completion body."""
    choices = (body or {}).get("choices") or []
    message = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else None


def _prompt(request: dict[str, Any]) -> str:
    """What the judge is shown of the request: its user turns."""
    turns = []
    for m in request.get("messages") or []:
        if not isinstance(m, dict) or m.get("role") != "user":
            continue
        content = m.get("content")
        if isinstance(content, list):
            content = "\n".join(
                str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p
            )
        turns.append(str(content or ""))
    return "\n\n".join(turns)


def _remembered(ctx: StepContext, kind: str) -> SplitInfo | None:
    path = ctx.run_dir / f"{kind}-split.txt"
    return get_split(ctx.store, path.read_text().strip()) if path.is_file() else None


def _remember(ctx: StepContext, split: SplitInfo) -> SplitInfo:
    (ctx.run_dir / f"{split.kind}-split.txt").write_text(split.id + "\n")
    return split


def _wait(
    ctx: StepContext, split_id: str, enough: Callable[[SplitInfo], bool], until: float
) -> None:
    """Until the split has ``enough``, ends, or ``until`` (epoch seconds) passes; a pause or
    cancel of the loop stops the wait (the run continues here later)."""
    while True:
        split = get_split(ctx.store, split_id)
        if split is None or split.state != "active" or enough(split) or time.time() >= until:
            return
        if get_run(ctx.store, ctx.run.id).status == "cancelled" or is_paused(
            ctx.store, ctx.config.name
        ):
            raise LoopError("stopped while waiting for live traffic; the run continues here")
        time.sleep(max(0.05, min(1.0, until - time.time())))


# ---- shadow ----------------------------------------------------------------------------


def shadow(ctx: StepContext) -> StepResult:
    cfg, store = ctx.config, ctx.store
    if cfg.shadow_pairs == 0:
        return StepResult(outputs={"status": "off"})
    candidate, incumbent = ctx.output("train", "candidate"), ctx.output("evaluate", "incumbent")
    if not incumbent:
        return StepResult(outputs={"status": "skipped: no incumbent to shadow"})
    actor = f"loop:{cfg.name}"
    split = _remembered(ctx, "shadow") or _remember(
        ctx,
        ensure_split(
            store, "shadow", cfg.model, candidate,
            lambda: start_shadow(store, cfg.model, candidate, cfg.shadow_share, cfg.shadow_pairs,
                                 actor=actor),
        ),
    )  # fmt: skip
    ctx.say(
        f"shadowing {candidate} on {cfg.shadow_share:.0%} of {cfg.model}'s chat requests "
        f"(up to {cfg.shadow_pairs} pairs, {cfg.shadow_wait:.0f} s at most)"
    )
    _wait(ctx, split.id, lambda s: s.pairs >= cfg.shadow_pairs, split.created + cfg.shadow_wait)
    # Ended first: a pair still in flight in a gateway is then refused, not left out unseen.
    end_split(store, split.id, "finished", f"judged by loop run {ctx.run.number}", actor=actor)
    pairs = read_pairs(store, split.id)
    if not pairs:
        ctx.say(f"no live traffic for {cfg.model} within {cfg.shadow_wait:.0f} s")
        return StepResult({"pairs": 0}, {"status": "skipped: no traffic", "split": split.id})
    path = ctx.run_dir / "shadow" / "report.json"
    report = _read_report(path, split.id, pairs)
    if report is None:
        ctx.say(f"judging {len(pairs)} shadow answers against the live ones ({cfg.judge_model})")
        report = asyncio.run(_judge_pairs(ctx, split, pairs, incumbent))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    keys = ("candidate", "reference", "n", "win_rate", "ci_low", "ci_high", "unparsed")
    outputs = {"status": "judged", "split": split.id, **{k: report[k] for k in keys},
               "shadow_errors": report["shadow_errors"], "report": str(path),
               "sha256": file_sha256(path)}  # fmt: skip
    counts = {"pairs": len(pairs), "judged": report["n"], "unparsed": report["unparsed"],
              "shadow_errors": report["shadow_errors"], "win_rate": _round(report["win_rate"]),
              "ci_low": _round(report["ci_low"]), "ci_high": _round(report["ci_high"])}  # fmt: skip
    if report["win_rate"] is not None:
        ctx.say(
            f"live traffic: {candidate} wins {report['win_rate']:.0%} against {incumbent} "
            f"(95% CI {report['ci_low']:.0%}-{report['ci_high']:.0%}, n={report['n']})"
        )
    return StepResult(counts, outputs, cost_usd=report["judge_cost"])


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _read_report(path: Path, split_id: str, pairs: list[PairInfo]) -> dict[str, Any] | None:
    """A report written for these very pairs by an earlier attempt, else None."""
    if not path.is_file():
        return None
    report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    same = [r["pair"] for r in report.get("rows", [])] == [p.id for p in pairs]
    return report if report.get("split") == split_id and same else None


async def _judge_rows(
    ctx: StepContext, client: Any, pairs: list[PairInfo], candidate_live: bool = False
) -> list[dict[str, Any]]:
    """Each pair judged in both orders; ``candidate_live``: the candidate gave the live
    answer (a canary's pairs), else the shadow one."""
    gate = asyncio.Semaphore(ctx.config.concurrency)
    return list(
        await asyncio.gather(*(_judge_one(ctx, client, gate, p, candidate_live) for p in pairs))
    )


def _models(pairs: list[PairInfo], side: str, default: str) -> str:
    """The model(s) that gave ``side`` ("live" or "shadow") of the pairs."""
    names = sorted({p.live_model if side == "live" else p.shadow_model for p in pairs})
    return ", ".join(names) or default


def _summary(
    ctx: StepContext, split: SplitInfo, pairs: list[PairInfo], rows: list[dict[str, Any]],
    reference: str,
) -> dict[str, Any]:  # fmt: skip
    """The win rate of the split's candidate over judged ``rows`` of ``pairs``, with its 95%
    bootstrap interval, against ``reference``."""
    scores = [r["score"] for r in rows if r["score"] is not None]
    ci = bootstrap_ci(scores)
    return {
        "split": split.id,
        "candidate": split.candidate,
        "reference": reference,
        "judge": ctx.config.judge_model,
        "n": len(scores),
        "wins": scores.count(1.0),
        "ties": scores.count(0.5),
        "losses": scores.count(0.0),
        "win_rate": win_rate(scores),
        "ci_low": ci[0] if ci else None,
        "ci_high": ci[1] if ci else None,
        "unparsed": sum(1 for r in rows for v in r["verdicts"] if v is None),
        "shadow_errors": sum(1 for p in pairs if p.shadow_error),  # the background answers
        "judge_errors": sum(1 for r in rows if r.get("judge_error")),
        "judge_cost": sum(r["judge_cost"] for r in rows),
        "live_latency_ms": _mean([p.live_latency_ms for p in pairs]),
        "shadow_latency_ms": _mean([p.shadow_latency_ms for p in pairs if p.shadow_latency_ms]),
        "rows": rows,
    }


async def _judge_pairs(
    ctx: StepContext, split: SplitInfo, pairs: list[PairInfo], incumbent: str
) -> dict[str, Any]:
    from openclone.routing.client import open_client

    client = await open_client(ctx.settings)
    try:
        rows = await _judge_rows(ctx, client, pairs)
    finally:
        await client.aclose()
    return _summary(ctx, split, pairs, rows, _models(pairs, "live", incumbent))


def _mean(xs: list[float | None]) -> float | None:
    values = [x for x in xs if x is not None]
    return sum(values) / len(values) if values else None


async def _judge_one(
    ctx: StepContext,
    client: Any,
    gate: asyncio.Semaphore,
    pair: PairInfo,
    candidate_live: bool = False,
) -> dict[str, Any]:
    """One pair judged in both orders (the candidate first as A, then as B)."""
    row: dict[str, Any] = {"pair": pair.id, "capture": pair.capture_id, "score": None,
                           "verdicts": [], "judge_cost": 0.0}  # fmt: skip
    live, other = _text(pair.live_response), _text(pair.shadow_response)
    if pair.shadow_error or other is None:
        row["shadow_error"] = pair.shadow_error or "no answer"
        if not candidate_live:
            row["score"] = 0.0  # the candidate failed where the live model answered
        return row  # (the incumbent failed in the background: nothing to compare)
    candidate, reference = (live or "", other) if candidate_live else (other, live or "")
    prompt = _prompt(pair.request)
    try:
        first, swapped = await asyncio.gather(
            _verdict(ctx, client, gate, prompt, candidate, reference, row),
            _verdict(ctx, client, gate, prompt, reference, candidate, row),
        )
    except ModelNotFound:
        raise  # no pair would fare better: the step fails, and a later run continues it
    except APIError as exc:
        row["judge_error"] = f"{type(exc).__name__}: {exc}"
        return row
    row["verdicts"] = [first, swapped]
    row["score"] = combine(first, swapped)
    row["lengths"] = {"shadow": len(other), "live": len(live or "")}
    return row


async def _verdict(
    ctx: StepContext,
    client: Any,
    gate: asyncio.Semaphore,
    prompt: str,
    a: str,
    b: str,
    row: dict[str, Any],
) -> Verdict | None:
    """The judge's verdict on A vs B; an unreadable one is asked once more, sampled. A
    judge whose engine cannot enforce the verdict's JSON schema is asked without it."""
    cfg = ctx.config
    price = ctx.settings.prices.get(cfg.judge_model)
    enforce, verdict, replies = cfg.judge_json, None, 0
    while replies < 2:
        try:
            async with gate:
                reply = await ask(
                    client,
                    cfg.judge_model,
                    judge_messages(prompt, a, b, cfg.judge_json),
                    max_tokens=cfg.eval_max_tokens,
                    temperature=0.0 if replies == 0 else _RETRY_TEMPERATURE,
                    seed=replies,
                    price=price,
                    response_format=verdict_format() if enforce else None,
                )
        except InvalidRequestError as exc:
            if not (enforce and exc.param == "response_format"):
                raise
            enforce = False  # asked once more, unenforced (the prompt still asks for JSON)
            continue
        replies += 1
        row["judge_cost"] += reply.cost
        verdict = parse_verdict(reply.text)
        if verdict is not None:
            break
    return verdict


# ---- canary ----------------------------------------------------------------------------


def canary(ctx: StepContext) -> StepResult:
    cfg, store = ctx.config, ctx.store
    if cfg.canary_share == 0:
        return StepResult(outputs={"status": "off"})
    candidate, incumbent = ctx.output("train", "candidate"), ctx.output("evaluate", "incumbent")
    if not incumbent:
        return StepResult(outputs={"status": "skipped: no incumbent"})
    split = _remembered(ctx, "canary")
    if split is None:
        # A candidate the gate would refuse on the evidence so far never takes real traffic.
        verdict = check(True, **{k: v for k, v in gate_evidence(ctx).items() if k != "canary"})
        if not verdict.ok:
            return StepResult(outputs={"status": "skipped: the gate refuses",
                                       "reasons": verdict.reasons})  # fmt: skip
        actor = f"loop:{cfg.name}"
        split = _remember(
            ctx,
            ensure_split(
                store, "canary", cfg.model, candidate,
                lambda: start_canary(store, cfg.model, candidate, cfg.canary_share,
                                     cfg.canary_policy, judge_pairs=cfg.canary_pairs,
                                     actor=actor),
            ),
        )  # fmt: skip
    ctx.say(
        f"canary: {candidate} serves {cfg.canary_share:.0%} of {cfg.model}'s requests "
        f"(until {cfg.canary_requests} answered, {cfg.canary_wait:.0f} s at most"
        + (f"; up to {split.budget} judged against {incumbent})" if split.budget else ")")
    )

    def served(s: SplitInfo) -> bool:
        arms = arm_totals(store, [s.id]).get(s.id, {})
        return "canary" in arms and arms["canary"].requests >= cfg.canary_requests

    quality = _judge_canary(ctx, split, served)
    now = get_split(store, split.id) or split
    arms = arm_totals(store, [split.id]).get(split.id, {})
    counts: dict[str, Any] = {}
    for arm, c in arms.items():
        mean = c.mean_latency_ms
        counts.update({f"{arm}_requests": c.requests, f"{arm}_errors": c.errors,
                       f"{arm}_latency_ms": None if mean is None else round(mean, 1)})  # fmt: skip
    outputs: dict[str, Any] = {"split": split.id, "state": now.state, "reason": now.reason,
                               "arms": {arm: asdict(c) for arm, c in arms.items()}}  # fmt: skip
    if quality is not None:
        keys = ("n", "win_rate", "ci_low", "ci_high", "unparsed", "shadow_errors", "report")
        outputs["quality"] = {k: quality[k] for k in keys}
        counts.update({"judged": quality["n"], "win_rate": _round(quality["win_rate"])})
    if now.state == "rolled_back":
        outputs["status"] = f"rolled back: {now.reason}"
    elif now.state != "active":
        outputs["status"] = f"{now.state}: {now.reason or '-'}"
    elif "canary" not in arms:
        end_split(store, split.id, "finished", "no traffic", actor=f"loop:{cfg.name}")
        outputs.update(status="skipped: no traffic", state="finished", reason="no traffic")
    else:
        outputs["status"] = "passed"  # still serving: the decision ends it
    ctx.say(f"canary {outputs['status']}")
    cost = quality["judge_cost"] if quality is not None else 0.0
    return StepResult(counts, outputs, cost_usd=cost)


def _moved(served: Callable[[SplitInfo], bool], seen: int, split: SplitInfo) -> bool:
    return served(split) or split.pairs != seen


def _checkpoint(n: int) -> int:
    """The last of 5, 10, 20, 40… judged pairs that ``n`` has reached (0: none): the
    canary's rate is tested there, not after every pair, which would make a false
    rollback far likelier than the interval's 5%."""
    point, at = 0, MIN_CANARY_PAIRS
    while at <= n:
        point, at = at, at * 2
    return point


def _judge_canary(
    ctx: StepContext, split: SplitInfo, served: Callable[[SplitInfo], bool]
) -> dict[str, Any] | None:
    """Wait for the canary to serve its requests, judging its pairs (the incumbent's answer
    to the same request) as they arrive, and roll it back when at a checkpoint its win rate
    is significantly below 50%. The judged rows are kept in the run's directory, so a
    continued run does not judge them again. Returns the summary of what was judged (None:
    nothing)."""
    return asyncio.run(_watch_canary(ctx, split, served))


async def _watch_canary(
    ctx: StepContext, split: SplitInfo, served: Callable[[SplitInfo], bool]
) -> dict[str, Any] | None:
    from openclone.routing.client import open_client

    cfg, store = ctx.config, ctx.store
    path = ctx.run_dir / "canary" / "judged.json"
    kept = json.loads(path.read_text("utf-8")) if path.is_file() else {}
    rows: list[dict[str, Any]] = kept.get("rows", []) if kept.get("split") == split.id else []
    until, seen, checked, summary = split.created + cfg.canary_wait, -1, 0, None
    client = None  # opened for the first pair, held for the rest
    try:
        while True:
            moved = partial(_moved, served, seen)
            await asyncio.to_thread(_wait, ctx, split.id, moved, until)
            now = get_split(store, split.id) or split
            seen = now.pairs
            pairs = read_pairs(store, split.id) if split.budget else []
            judged = {r["pair"] for r in rows}
            new = [p for p in pairs if p.id not in judged]
            if new:
                ctx.say(f"judging {len(new)} canary answer(s) against {split.name}'s incumbent")
                client = client or await open_client(ctx.settings)
                rows += await _judge_rows(ctx, client, new, candidate_live=True)
                path.parent.mkdir(parents=True, exist_ok=True)
                text = json.dumps({"split": split.id, "rows": rows}, indent=2) + "\n"
                path.write_text(text, encoding="utf-8")
            if rows:
                summary = _summary(ctx, split, pairs, rows, _models(pairs, "shadow", split.name))
                summary["report"] = str(path)
                point = _checkpoint(summary["n"])
                if point > checked:
                    checked = point
                    high = summary["ci_high"]
                    if now.state == "active" and high is not None and high < 0.5:
                        reason = (
                            f"judged quality: the canary won {summary['win_rate']:.0%} against "
                            f"the incumbent on its own requests (95% CI up to {high:.0%}, "
                            f"n={summary['n']})"
                        )
                        keys = ("judge", "n", "win_rate", "ci_low", "ci_high", "report")
                        evidence = {k: summary[k] for k in keys}
                        roll_back(store, now, reason, evidence, actor=f"loop:{cfg.name}")
                        return summary
            if now.state != "active" or served(now) or time.time() >= until:
                return summary
    finally:
        if client is not None:
            await client.aclose()
