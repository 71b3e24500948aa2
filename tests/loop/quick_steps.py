"""Quick stand-ins for the two slow steps, and ``openclone`` run with them.

``fake_train`` registers a version from the distilled set as train does, and
``passing_evaluate`` writes reports naming that candidate that pass the gate, as evaluate
writes them; every other step, the gate included, stays the real one. So a test drives a
whole loop run in seconds (training and judging on CPU take minutes).

``python -m loop.quick_steps ARGS`` (with ``tests`` on ``PYTHONPATH``) is the
``openclone`` command line with those two steps swapped in: a real process, with the real
``loop start`` and its signal handling, for tests that stop it from outside.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from openclone.errors import ModelNotFound
from openclone.files import file_sha256
from openclone.loop import runner
from openclone.loop.context import Step, StepContext, StepResult
from openclone.registry.versions import get_version, register, set_alias

__all__ = ["fake_train", "passing_evaluate", "use_quick_steps"]


def fake_train(ctx: StepContext) -> StepResult:
    """A version of the loop's model registered from the distilled set, as train does."""
    dataset = ctx.output("distill", "dataset")
    lineage = {"run": f"support-r{ctx.run.number}", "dataset": dataset,
               "dataset_sha256": file_sha256(Path(dataset))}  # fmt: skip
    own = register(ctx.store, f"support-r{ctx.run.number}", "standin", lineage=lineage)
    set_alias(ctx.store, own.name, own.version)  # the run's own name, as training names it
    v = register(ctx.store, ctx.config.model, "standin", lineage=lineage)
    return StepResult(outputs={"candidate": v.pinned, "version": v.version}, candidate=v.pinned)


def passing_evaluate(ctx: StepContext) -> StepResult:
    """Reports naming this candidate that pass the gate, as evaluate writes them."""
    candidate = ctx.output("train", "candidate")
    try:
        incumbent: str | None = get_version(ctx.store, ctx.config.model).pinned
    except ModelNotFound:
        incumbent = None
    refs = {"teacher": ctx.config.teacher, **({"incumbent": incumbent} if incumbent else {})}
    reports = {}
    for key, ref in refs.items():
        path = ctx.run_dir / f"eval-vs-{key}" / "report.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"candidate": candidate, "reference": ref, "n": 2,
                                    "win_rate": 0.6, "ci_low": 0.3, "ci_high": 0.9}))  # fmt: skip
        reports[key] = {"report": str(path)}
    return StepResult(outputs={"reports": reports, "incumbent": incumbent})


def use_quick_steps() -> list[tuple[str, Step]]:
    """The runner's steps with train and evaluate swapped for the quick ones."""
    steps = dict(runner.STEPS)
    steps.update(train=fake_train, evaluate=passing_evaluate)
    return list(steps.items())


if __name__ == "__main__":
    from openclone.cli import app

    runner.STEPS[:] = use_quick_steps()  # in place: the scheduler's runner reads this list
    app(sys.argv[1:], prog_name="openclone")
