"""Finished loop runs written through the loop's own state functions, in milliseconds: what
a status or a chart reads, without distilling, training or judging anything."""

from __future__ import annotations

from typing import Any

from loop.helpers import MINIMAL
from openclone.loop import LoopConfig
from openclone.loop.state import RunInfo, claim_run, end_run, record_step
from openclone.store import Store

# Two loops and no model to load (a status or a chart never calls one): "support", on a
# machine at $1/hour priced against its teacher, and "sales", which has never run.
TWO_LOOPS = (
    """
[prices]
"smollm2-135m-instruct" = { input = 2.5, output = 10 }

[[models]]
name = "m"
engine = "openai"
params = { base_url = "http://127.0.0.1:9/v1", connect_timeout = 1 }
"""
    + MINIMAL.replace('every = "1d"', 'every = "1d"\nserving_cost_per_hour = 1.0')
    + MINIMAL.replace('name = "support"', 'name = "sales"').replace(
        'model = "support"', 'model = "sales"'
    )
)


def report(win_rate: float, ci_low: float, ci_high: float, n: int) -> dict[str, Any]:
    """An evaluate step's summary of one report, as loop/judge.py records it."""
    return {"candidate": "support@2", "reference": "x", "n": n, "win_rate": win_rate,
            "ci_low": ci_low, "ci_high": ci_high, "unparsed": 0, "errors": 0}  # fmt: skip


def finished_run(
    store: Store,
    loop: LoopConfig,
    *,
    teacher_usd: float,
    training_usd: float,
    reports: dict[str, dict[str, Any]],
    action: str = "promote",
) -> RunInfo:
    """A run that distilled for ``teacher_usd``, trained for ``training_usd``, was judged
    with ``reports`` (by reference: ``incumbent``, ``teacher``) and decided ``action``."""
    run = claim_run(store, loop)
    record_step(store, run.id, "collect", "done", counts={"captures": 10}, position=0)
    record_step(store, run.id, "distill", "done", cost_usd=teacher_usd, position=2)
    record_step(store, run.id, "train", "done", cost_usd=training_usd, position=4)
    record_step(store, run.id, "evaluate", "done", outputs={"reports": reports}, position=5)
    record_step(store, run.id, "decide", "done", position=8, action=action,
                reason=f"support@{run.number + 1} judged", candidate=f"support@{run.number + 1}")  # fmt: skip
    return end_run(store, run.id, "finished")
