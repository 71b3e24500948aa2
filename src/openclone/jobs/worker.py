"""The job worker: ``python -m openclone.jobs.worker <job-dir>`` runs one job to its end.

Job kinds live in :data:`KINDS`, a plain name -> function table; a kind gets its spec, a
:class:`JobContext` for progress and stop requests, and whether this attempt resumes an
earlier one, and returns a JSON-ready result. SIGTERM and SIGINT ask the kind to stop
gracefully (training checkpoints first); the job then ends as ``cancelled``.

The worker starts once its launcher says so on stdin (:data:`~openclone.jobs.runner.GO_AHEAD`,
then end of file): by then ``status.json`` is this attempt's, naming this process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import time
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from openclone.jobs.runner import GO_AHEAD, JobStatus, job_api_key, write_status

__all__ = ["KINDS", "JobContext", "main"]


@dataclass
class JobContext:
    job_dir: Path
    status: JobStatus
    stop_requested: bool = False
    _stop_hooks: list[Callable[[], None]] = field(default_factory=list)
    _last_write: float = 0.0

    def progress(self, step: int, total: int, message: str = "") -> None:
        """Record progress; written at most every half second (steps can be fast)."""
        self.status.step, self.status.total, self.status.message = step, total, message
        now = time.monotonic()
        if now - self._last_write >= 0.5 or (total and step >= total):
            write_status(self.job_dir, self.status)
            self._last_write = now

    def on_stop(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` when the job is asked to stop (at once if it already was)."""
        self._stop_hooks.append(hook)
        if self.stop_requested:
            hook()

    def request_stop(self) -> None:
        self.stop_requested = True
        for hook in self._stop_hooks:
            hook()


class Cancelled(Exception):
    """Raised by a kind that stopped because it was asked to (its result, if any, in args)."""


def _train(spec: dict[str, Any], ctx: JobContext, resume: bool) -> dict[str, Any]:
    from openclone.train.config import TrainConfig
    from openclone.train.metrics_log import metrics_callback
    from openclone.train.sft import Progress, SFTRunner

    config = TrainConfig.from_dict({**spec, "resume": resume or spec.get("resume", False)})

    def on_progress(p: Progress) -> None:
        loss = f" loss {p.loss:.4f}" if p.loss is not None else ""
        ctx.progress(p.step, p.total, f"{p.phase}{loss}")

    # Step metrics and checkpoints as JSON lines beside the status (the fine-tuning API's events).
    metrics = metrics_callback(ctx.job_dir / "metrics.jsonl")
    runner = SFTRunner(config, on_progress=on_progress, callbacks=[metrics])
    ctx.on_stop(runner.request_stop)
    result = runner.run()
    out: dict[str, Any] = {
        "name": result.name,
        "run_dir": str(result.run_dir),
        "adapter_dir": str(result.adapter_dir) if result.adapter_dir else None,
        "final_step": result.final_step,
        "max_steps": result.max_steps,
        "metrics": result.metrics,
    }
    if result.stopped:
        raise Cancelled(out)
    if result.main_process:
        out["registered"] = _register_run(result.name, config.register, config.home)
    return out


def _register_run(run: str, also: str | None, home: Path | None) -> list[str]:
    from openclone.config import load_settings
    from openclone.registry.trained import register_run
    from openclone.store import open_store

    store = open_store(load_settings())
    try:
        return [v.pinned for v in register_run(store, run, also, home)]
    finally:
        store.close()


T = TypeVar("T")


def _run_async(ctx: JobContext, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``work`` in an event loop that a stop request cancels (CancelledError is raised)."""

    async def main() -> T:
        task, loop = asyncio.current_task(), asyncio.get_running_loop()
        assert task is not None

        def stop() -> None:  # called from the signal handler
            loop.call_soon_threadsafe(task.cancel)

        ctx.on_stop(stop)
        return await work()

    return asyncio.run(main())


def _distill(spec: dict[str, Any], ctx: JobContext, resume: bool) -> dict[str, Any]:
    from openclone.distill.config import DistillError
    from openclone.distill.recipe import DistillRequest, plan, run_plan, shortfall
    from openclone.distill.run import ProgressEvent

    p = plan(DistillRequest.from_dict(spec))
    api_key = job_api_key()

    def on_progress(e: ProgressEvent) -> None:
        ctx.progress(e.done, e.count, e.summary())

    try:
        result = _run_async(ctx, lambda: run_plan(p, api_key, on_progress))
    except asyncio.CancelledError:
        # The rows so far stay, the card says interrupted; resuming the job continues.
        raise Cancelled({"out": str(p.config.out), "status": "interrupted"}) from None
    out = {
        "out": str(result.out),
        "status": result.status,
        "kept": result.kept,
        "new": result.new,
        "dropped": result.dropped,
        "cost_usd": result.account.cost_usd,
        "card": str(result.card_md),
    }
    if why := shortfall(p, result):  # the rows stay; resuming the job continues from them
        raise DistillError(f"{why}, then resume the job")
    return out


def _eval(spec: dict[str, Any], ctx: JobContext, resume: bool) -> dict[str, Any]:
    from openclone.config import load_settings
    from openclone.evaluate.runner import EvalJob, open_and_run_eval

    job = EvalJob.from_spec(spec)
    settings = load_settings(job.settings_file)
    pset = job.config.load_prompts()

    def on_progress(done: int, total: int) -> None:
        ctx.progress(done, total, "prompts")

    try:
        run = _run_async(
            ctx,
            lambda: open_and_run_eval(
                settings, job.config, job.base_url, job_api_key(), on_progress, pset
            ),
        )
    except asyncio.CancelledError:  # an evaluation is cheap to run again: nothing to keep
        raise Cancelled({"out": str(job.config.out)}) from None
    report = run.report
    return {
        "win_rate": report.win_rate,
        "ci": [report.ci_low, report.ci_high],
        "n": report.n,
        "unparsed": report.unparsed,
        "errors": report.errors,
        "battles_recorded": run.recorded,
        "reports": {kind: str(path) for kind, path in run.paths.items()},
    }


KINDS: dict[str, Callable[[dict[str, Any], JobContext, bool], dict[str, Any]]] = {
    "train": _train,
    "distill": _distill,
    "eval": _eval,
}


def main(job_dir: Path) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # per-eval INFO chatter
    if sys.stdin.buffer.read() != GO_AHEAD:  # the launcher died before recording this attempt
        logging.getLogger("openclone.jobs").error("no go-ahead from the launcher; not started")
        return 1
    data = json.loads((job_dir / "spec.json").read_text())
    status = JobStatus(**json.loads((job_dir / "status.json").read_text()))
    status.state, status.started = "running", time.time()
    ctx = JobContext(job_dir, status)
    write_status(job_dir, status)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logging.getLogger("openclone.jobs").info("signal %d: stopping after a checkpoint", signum)
        ctx.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        status.result = KINDS[data["kind"]](data["spec"], ctx, bool(data.get("resume")))
        status.state = "succeeded"
    except Cancelled as exc:
        status.state, status.result = "cancelled", exc.args[0] if exc.args else {}
    except Exception as exc:  # the job's failure is its status; the traceback goes to the log
        traceback.print_exc()
        status.state, status.error = "failed", f"{type(exc).__name__}: {exc}"
    status.finished = time.time()
    write_status(job_dir, status)
    return 0 if status.state == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
