"""``LoopRunner(config, settings).run()``: one run of a loop, step by recorded step.

The steps are a plain ordered table. Before each step the runner records it as running,
after it what it produced (counts, outputs, cost); a step recorded ``done`` is never run
again, so a run stopped anywhere (a crash, Ctrl-C, ``loop pause``, a failure) continues
at the step it stopped in, and a teacher paid once is not paid twice. A step may end the
run early with a decision ("not enough data"): the steps after it are recorded as
skipped, and the report is still written.

While it runs, a thread renews the run's lease (:func:`~openclone.loop.state.renew_lease`),
so a step of any length keeps the run held, and a process that dies stops holding it.
A process told to stop at once (``loop start`` on SIGTERM raises :class:`LoopStopped`,
even mid-step) records the run ``paused``: the next start continues it at once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from openclone.config import Settings
from openclone.files import make_private_dir
from openclone.loop import build, gather, judge, review, shadow
from openclone.loop.config import LoopConfig, LoopError
from openclone.loop.context import Step, StepContext
from openclone.loop.report import report
from openclone.loop.state import (
    LEASE,
    RunInfo,
    claim_run,
    end_run,
    get_run,
    is_paused,
    record_step,
    renew_lease,
    runs_here,
    start_step,
)
from openclone.store import Store, open_store

__all__ = ["STEPS", "LoopRunner", "LoopStepFailed", "LoopStopped", "run_dir"]

log = logging.getLogger("openclone.loop")

STEPS: list[tuple[str, Step]] = [
    ("collect", gather.collect),
    ("curate", gather.curate),
    ("distill", build.distill),
    ("review", review.review),
    ("train", build.train),
    ("evaluate", judge.evaluate),
    ("shadow", shadow.shadow),
    ("canary", shadow.canary),
    ("decide", judge.decide),
    ("report", report),
]


class LoopStepFailed(LoopError):
    """A step raised; the run is recorded as failed at that step and continues from it."""


class LoopStopped(BaseException):  # like KeyboardInterrupt: not an Exception
    """The process was told to stop now (SIGTERM): the run is recorded ``paused``."""


@contextlib.contextmanager
def _leased(store: Store, run_id: str) -> Iterator[None]:
    """Renew the run's lease every ``LEASE / 6`` seconds until the block ends."""
    done = threading.Event()

    def renew() -> None:
        while not done.wait(LEASE / 6):
            try:
                if not renew_lease(store, run_id):
                    return  # cancelled, or no longer ours: the steps notice between steps
            except Exception:  # a busy or unreachable database: try again next time
                log.warning("could not renew the lease of loop run %s", run_id, exc_info=True)

    thread = threading.Thread(target=renew, name=f"lease-{run_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(10.0)  # a renewal stuck on a busy database must not hold the run up


def run_dir(settings: Settings, loop: str, number: int) -> Path:
    """Where a run's files go: ``$OPENCLONE_HOME/loops/LOOP/run-N``."""
    return settings.home / "loops" / loop / f"run-{number}"


class LoopRunner:
    """Runs (or continues) the loop's current run; ``say`` gets a line per event."""

    def __init__(
        self,
        config: LoopConfig,
        settings: Settings,
        say: Callable[[str], None] | None = None,
        *,
        stop: threading.Event | None = None,
    ) -> None:
        """``stop``: set when the process should stop (``loop start`` on SIGTERM); the run
        stops before its next step and is recorded ``paused``, so the next start continues
        it at once."""
        self.config, self.settings = config, settings
        self.say = say or (lambda message: None)
        self.stop = stop or threading.Event()

    def run(self) -> RunInfo:
        store = open_store(self.settings)
        try:
            return self._run(store)
        finally:
            store.close()

    def _run(self, store: Store) -> RunInfo:
        run = claim_run(store, self.config)
        done = [s.name for s in run.steps if s.state in ("done", "skipped")]
        if done:
            self.say(f"continuing run {run.number} after {', '.join(done)}")
        directory = run_dir(self.settings, self.config.name, run.number)
        make_private_dir(directory)  # prompts and answers from captures: 0700, as the home
        ctx = StepContext(self.config, self.settings, store, run, directory, say=self.say)
        try:
            with _leased(store, run.id):
                return self._steps(store, run, ctx)
        except LoopStopped:
            self.say(f"stopped: run {run.number} continues on the next start")
            end_run(store, run.id, "paused", error="stopped (SIGTERM)")
            raise

    def _steps(self, store: Store, run: RunInfo, ctx: StepContext) -> RunInfo:
        ending = run.action == "skip"  # an earlier attempt already decided to stop early
        for position, (name, step) in enumerate(STEPS):
            recorded = run.step(name)
            if recorded is not None and recorded.state in ("done", "skipped"):
                ctx.outputs[name] = recorded.outputs
                continue
            if ending and name != "report":
                record_step(store, run.id, name, "skipped", position=position)
                continue
            stopped = self._stopped(store, run.id)
            if stopped is not None:
                return stopped
            start_step(store, run.id, name, position)
            try:
                result = step(ctx)
            except LoopStopped:
                record_step(store, run.id, name, "paused", error="stopped", position=position)
                raise
            except BaseException as exc:
                interrupted = not isinstance(exc, Exception)
                message = "interrupted" if interrupted else f"{type(exc).__name__}: {exc}"
                record_step(store, run.id, name, "failed", error=message, position=position)
                end_run(store, run.id, "failed", error=f"{name}: {message}")
                if interrupted:
                    raise
                raise LoopStepFailed(
                    f"run {run.number} of loop {self.config.name!r} failed at {name}: {message}; "
                    f"`openclone loop run {self.config.name}` continues from there"
                ) from exc
            if result.waiting is not None:  # people must act first: stop here, not fail
                record_step(store, run.id, name, "waiting", counts=result.counts,
                            outputs=result.outputs, position=position)  # fmt: skip
                self.say(f"run {run.number} is {result.waiting}; "
                         f"`openclone loop run {self.config.name}` continues it")  # fmt: skip
                return end_run(store, run.id, "waiting", error=result.waiting)
            decision = result.decision  # recorded with the step, in one transaction
            record_step(store, run.id, name, "done", counts=result.counts, outputs=result.outputs,
                        cost_usd=result.cost_usd, position=position,
                        action=decision.action if decision else None,
                        reason=decision.reason if decision else "",
                        candidate=result.candidate)  # fmt: skip
            ctx.outputs[name] = result.outputs
            if decision is not None:
                self.say(f"decision: {decision.action}: {decision.reason}")
                ending = ending or decision.action == "skip"
        return end_run(store, run.id, "finished")

    def _stopped(self, store: Store, run_id: str) -> RunInfo | None:
        """The run as it stands when it was cancelled or its loop paused, else None."""
        current = get_run(store, run_id)
        if current.status == "cancelled":
            self.say(f"run {current.number} was cancelled")
            return current
        if not runs_here(store, run_id):  # taken over while this process could not renew it
            self.say(f"run {current.number} is run by another process now; this one stops")
            return current
        if is_paused(store, self.config.name):
            self.say(f"loop {self.config.name!r} is paused; run {current.number} stops here")
            return end_run(store, run_id, "paused")
        if self.stop.is_set():
            self.say(f"stopping: run {current.number} continues on the next start")
            return end_run(store, run_id, "paused", error="stopped with the server")
        return None
