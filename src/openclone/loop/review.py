"""The optional human-review gate between distill and train (``review = true``).

The first time it runs, the step registers the distilled dataset for review
(:mod:`openclone.store.review`) and the run waits: it is recorded ``waiting`` and ends, and
people review the examples in the admin page or with ``openclone data review``. Each
later ``openclone loop run`` checks again: while any example is still pending it waits
again; once none is, the approved examples, edits applied, are what the candidate is
trained on (``outputs["dataset"]``). Without ``review`` the step passes, and training
takes the distilled rows as they are.
"""

from __future__ import annotations

from pathlib import Path

from openclone.files import file_sha256
from openclone.loop.context import Decision, StepContext, StepResult
from openclone.loop.state import RunInfo
from openclone.store.db import Store
from openclone.store.review import (
    ReviewNotFound,
    export_approved,
    find_for_path,
    get_dataset,
    register,
)

__all__ = ["pending", "review"]


def pending(store: Store, run: RunInfo) -> int:
    """Examples of ``run``'s review still pending (0: its review is done, or it has none)."""
    step = run.step("review")
    dataset = step.outputs.get("review_dataset") if step is not None else None
    if not dataset:
        return 0
    try:
        return get_dataset(store, str(dataset)).counts["pending"]
    except ReviewNotFound:  # deleted: the step registers it again when it runs
        return 0


def review(ctx: StepContext) -> StepResult:
    cfg, store = ctx.config, ctx.store
    if not cfg.review:
        return StepResult(counts={"review": "off"})
    actor = f"loop:{cfg.name}"
    distilled = Path(ctx.output("distill", "dataset"))
    # Found by path, not hash: an erasure may have rewritten the file since it was
    # registered (and deleted those examples); what was reviewed stays reviewed.
    info = find_for_path(store, distilled) or register(
        store, distilled, actor=actor, tenant=cfg.tenant
    )
    counts = {
        **info.counts,
        "rows": sum(info.counts[s] for s in ("pending", "approved", "rejected")),
    }
    outputs: dict[str, object] = {"review_dataset": info.id}
    pending = info.counts["pending"]
    if pending:
        ctx.say(
            f"{pending} of {counts['rows']} examples wait for review (admin page, or "
            f"`openclone data review list {info.id}`); `openclone loop run {cfg.name}` "
            "continues once none is pending"
        )
        return StepResult(counts, outputs, waiting=f"waiting for review: {pending} pending")
    out = ctx.run_dir / "reviewed.jsonl"
    approved = export_approved(store, info.id, out, actor=actor)
    outputs.update(dataset=str(out), sha256=file_sha256(out))
    if approved == 0:
        return StepResult(counts, outputs, decision=Decision("skip", "review approved no example"))
    ctx.say(f"training on the {approved} approved examples ({info.counts['edited']} edited)")
    return StepResult(counts, outputs)
