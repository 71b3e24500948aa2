"""A loop's records in the store: its runs, their steps, its pause switch.

A run is claimed by one process at a time: :func:`claim_run` continues the loop's
unfinished run (crashed, failed or paused) or starts the next one, and refuses while
another live process holds it. A process holds a run by a lease (``lease_until``) that it
renews while it runs (:func:`renew_lease`, every ``LEASE / 6`` seconds): a process that
died anywhere, on another host or in a container that is gone, stops renewing, and once
its lease passes the run is free to continue; on the same host a dead pid frees it at
once. The claim is one conditional write that exactly one of two racing processes wins:
a new run is an INSERT of the next number, which the unique (loop, number) index lets
only one process make; continuing a run is an UPDATE that matches only while the run
still has the state (status, pid, host, lease) this process read. The loser gets
:class:`RunTaken` ("run N is being run by another process"). Steps are written as they
start and end, so whatever stops a process, the store says which steps are done and
what they produced.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError

from openclone.loop.config import LoopConfig, LoopError
from openclone.store.audit import audit
from openclone.store.db import Store
from openclone.store.tables import LoopRun, LoopState, LoopStep, now

__all__ = [
    "RunInfo",
    "RunTaken",
    "StepInfo",
    "claim_run",
    "end_run",
    "get_run",
    "is_paused",
    "iso_utc",
    "last_decided",
    "last_ended",
    "last_used_until",
    "list_runs",
    "note",
    "orphaned",
    "record_step",
    "renew_lease",
    "request_cancel",
    "runs_here",
    "set_paused",
    "start_step",
]

UNFINISHED = ("running", "paused", "failed", "waiting")  # waiting: for a review
LEASE = 60.0  # seconds a run stays held by a process that stopped renewing it


class RunTaken(LoopError):
    """Another process claimed the run first; this one runs nothing."""


@dataclass(frozen=True)
class StepInfo:
    name: str
    state: str  # running|done|failed|skipped
    counts: dict[str, Any]
    outputs: dict[str, Any]
    cost_usd: float
    error: str | None
    started: float
    finished: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "counts": self.counts,
            "cost_usd": round(self.cost_usd, 6),
            "started": iso_utc(self.started),
            "finished": iso_utc(self.finished),
            "seconds": _seconds(self.started, self.finished),
            "error": self.error,
        }


@dataclass(frozen=True)
class RunInfo:
    id: str
    loop: str
    number: int
    status: str
    action: str | None
    reason: str
    candidate: str | None
    error: str | None
    created: float
    finished: float | None
    ended: float | None = None  # when it last stopped running, however it stopped
    steps: list[StepInfo] = field(default_factory=list)
    takeovers: int = 0  # times taken over from a process that died running it

    @property
    def cost_usd(self) -> float:
        return sum(s.cost_usd for s in self.steps)

    @property
    def decision(self) -> str | None:
        """What a person reads: ``promoted support@2``, ``skipped: not enough data (…)``."""
        if self.action is None:
            return None
        verb = {"promote": "promoted", "reject": "rejected", "skip": "skipped"}[self.action]
        return f"{verb}: {self.reason}" if self.reason else verb

    def step(self, name: str) -> StepInfo | None:
        return next((s for s in self.steps if s.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "loop": self.loop,
            "number": self.number,
            "status": self.status,
            "decision": self.decision,
            "action": self.action,
            "candidate": self.candidate,
            "cost_usd": round(self.cost_usd, 6),
            "created": iso_utc(self.created),
            "finished": iso_utc(self.finished),
            "seconds": _seconds(self.created, self.finished),
            "error": self.error,
            "steps": [s.to_dict() for s in self.steps],
        }


def iso_utc(t: float | None) -> str | None:
    """Epoch seconds as an ISO 8601 UTC time to the second (None stays None)."""
    return None if t is None else dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")


def _seconds(start: float, end: float | None) -> float | None:
    return None if end is None else round(end - start, 2)


def _step(s: LoopStep) -> StepInfo:
    return StepInfo(s.name, s.state, dict(s.counts), dict(s.outputs), s.cost_usd, s.error,
                    s.started, s.finished)  # fmt: skip


def _run(s: Any, r: LoopRun, steps: list[StepInfo] | None = None) -> RunInfo:
    """``r`` as a RunInfo, with ``steps`` (read here when not given)."""
    if steps is None:
        rows = s.scalars(
            select(LoopStep).where(LoopStep.run_id == r.id).order_by(LoopStep.position)
        )
        steps = [_step(x) for x in rows]
    return RunInfo(r.id, r.loop, r.number, r.status, r.action, r.reason, r.candidate, r.error,
                   r.created, r.finished, r.ended, steps, r.takeovers or 0)  # fmt: skip


@functools.cache
def here() -> str:
    """Where this process runs, as a run records it: the hostname and the pid namespace —
    two containers may share a hostname, and a pid means something only in its own
    namespace, so only a run recorded from this very namespace is checked by its pid."""
    name = socket.gethostname()
    try:
        return f"{name} {os.readlink('/proc/self/ns/pid')}"  # e.g. "web-1 pid:[4026531836]"
    except OSError:  # not Linux, or /proc hidden
        return name


def _ours(r: LoopRun) -> bool:
    """Whether this very process is the one ``r`` records."""
    return r.pid == os.getpid() and r.host == here()


def _held(r: LoopRun, now: float) -> bool:
    """Whether another live process runs ``r`` (a dead one's run is ours to continue)."""
    if r.pid is None or _ours(r):
        return False
    if r.host == here():
        try:  # on this host a dead process is known at once, without waiting for its lease
            os.kill(r.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
    # Elsewhere only the lease tells: a run recorded before leases has none, and its
    # process is gone (leases came with the upgrade that restarted it).
    return r.lease_until is not None and r.lease_until > now


def orphaned(store: Store, run_id: str) -> bool:
    """Whether a run recorded ``running`` lost its process (killed, crashed, its machine
    restarted): not this process's own, its pid gone on this host, or, from another host,
    its lease lapsed a whole ``LEASE`` ago (a process that merely could not renew it for a
    while — a database away a minute — is not taken over on the spot)."""
    with store.session() as s:
        r = s.get(LoopRun, run_id)
        if r is None or r.status != "running":
            return False
        return not _ours(r) and not _held(r, now() - LEASE)


def runs_here(store: Store, run_id: str) -> bool:
    """Whether this process still holds the run (another may have taken it over after
    this one could not renew its lease)."""
    with store.session() as s:
        r = s.get(LoopRun, run_id)
        return r is not None and _ours(r)


def claim_run(store: Store, config: LoopConfig) -> RunInfo:
    """The run this process now runs: the loop's unfinished one, else a new one.

    Raises :class:`RunTaken` when another process claimed it between our read and our
    write, and :class:`LoopError` when the loop is paused or a live process runs it."""
    me, host, at = os.getpid(), here(), now()
    with store.session() as s:
        state = s.get(LoopState, config.name)
        if state is not None and state.paused:
            raise LoopError(
                f"loop {config.name!r} is paused; `openclone loop resume {config.name}` first"
            )
        last = s.scalar(
            select(LoopRun).where(LoopRun.loop == config.name).order_by(LoopRun.number.desc())
        )
        if last is not None and last.status == "running" and _held(last, at):
            raise LoopError(
                f"run {last.number} of loop {config.name!r} is running in process {last.pid} "
                f"on {last.host}; `openclone loop cancel {config.name}` to stop it (a "
                f"process that died frees it within {LEASE:.0f} s)"
            )
        number = (last.number + 1) if last is not None else 1
        if last is not None and last.status in UNFINISHED:
            number = last.number  # continue it: its finished steps stay finished
            pid = LoopRun.pid.is_(None) if last.pid is None else LoopRun.pid == last.pid
            lease = (LoopRun.lease_until.is_(None) if last.lease_until is None
                     else LoopRun.lease_until == last.lease_until)  # fmt: skip
            result: CursorResult[Any] = s.execute(  # type: ignore[assignment]
                update(LoopRun)
                .where(LoopRun.id == last.id, LoopRun.status == last.status, pid,
                       LoopRun.host == last.host, lease)
                .values(status="running", error=None, pid=me, host=host,
                        lease_until=at + LEASE,
                        takeovers=LoopRun.takeovers + (1 if last.status == "running" else 0))
                .execution_options(synchronize_session=False)
            )  # fmt: skip
            run_id = last.id if result.rowcount == 1 else None
        else:
            run = LoopRun(loop=config.name, number=number, reason="", config=config.to_dict(),
                          created=at, status="running", pid=me, host=host,
                          lease_until=at + LEASE)  # fmt: skip
            s.add(run)
            try:
                s.flush()
                run_id = run.id
            except IntegrityError:  # another process inserted this number first
                run_id = None
        if run_id is None:
            s.rollback()
            raise RunTaken(f"run {number} of loop {config.name!r} is being run by another process")
        s.expire_all()
        claimed = s.get(LoopRun, run_id)
        assert claimed is not None
        return _run(s, claimed)


def renew_lease(store: Store, run_id: str) -> bool:
    """Hold the run ``LEASE`` seconds more; False once this process no longer runs it
    (cancelled, ended, or taken over after the lease lapsed)."""
    with store.session() as s:
        result: CursorResult[Any] = s.execute(  # type: ignore[assignment]
            update(LoopRun)
            .where(LoopRun.id == run_id, LoopRun.status == "running",
                   LoopRun.pid == os.getpid(), LoopRun.host == here())
            .values(lease_until=now() + LEASE)
            .execution_options(synchronize_session=False)
        )  # fmt: skip
        return result.rowcount == 1


def start_step(store: Store, run_id: str, name: str, position: int) -> None:
    with store.session() as s:
        step = s.get(LoopStep, (run_id, name))
        if step is None:
            step = LoopStep(run_id=run_id, name=name, position=position, counts={}, outputs={})
            s.add(step)
        step.state, step.error, step.started, step.finished = "running", None, now(), None


def record_step(
    store: Store,
    run_id: str,
    name: str,
    state: str,
    *,
    counts: dict[str, Any] | None = None,
    outputs: dict[str, Any] | None = None,
    cost_usd: float = 0.0,
    error: str | None = None,
    position: int = 0,
    action: str | None = None,
    reason: str = "",
    candidate: str | None = None,
) -> None:
    """A step's end: ``done`` (with what it produced), ``failed`` or ``skipped``; with
    ``action`` and ``candidate``, the run's decision and candidate in the same transaction,
    so no crash can record the step done and lose what it decided."""
    with store.session() as s:
        if action is not None or candidate is not None:
            _note(s, run_id, action=action, reason=reason, candidate=candidate)
        step = s.get(LoopStep, (run_id, name))
        if step is None:  # skipped steps never started
            step = LoopStep(run_id=run_id, name=name, position=position, started=now())
            s.add(step)
        step.state, step.error, step.finished = state, error, now()
        step.counts, step.outputs, step.cost_usd = counts or {}, outputs or {}, cost_usd


def end_run(store: Store, run_id: str, status: str, *, error: str | None = None) -> RunInfo:
    """Record how the run stands now; a run cancelled meanwhile stays cancelled."""
    with store.session() as s:
        run = s.get(LoopRun, run_id)
        if run is None:
            raise LoopError(f"no loop run {run_id!r}")
        if run.status == "running":
            run.status, run.error, run.ended = status, error, now()
            run.lease_until = None
            if status in ("finished", "cancelled"):
                run.finished = run.ended
        s.flush()
        return _run(s, run)


def note(
    store: Store,
    run_id: str,
    *,
    action: str | None = None,
    reason: str = "",
    candidate: str | None = None,
) -> None:
    """Record the run's candidate or decision (outside a step's end)."""
    with store.session() as s:
        _note(s, run_id, action=action, reason=reason, candidate=candidate)


def _note(s: Any, run_id: str, *, action: str | None, reason: str, candidate: str | None) -> None:
    run = s.get(LoopRun, run_id)
    if run is None:
        return
    if action is not None:
        run.action, run.reason = action, reason
    if candidate is not None:
        run.candidate = candidate


def get_run(store: Store, run_id: str) -> RunInfo:
    with store.session() as s:
        run = s.get(LoopRun, run_id)
        if run is None:
            raise LoopError(f"no loop run {run_id!r}")
        return _run(s, run)


def list_runs(store: Store, loop: str, limit: int | None = None) -> list[RunInfo]:
    """The loop's runs, newest first (their steps in one query, not one per run)."""
    with store.session() as s:
        q = select(LoopRun).where(LoopRun.loop == loop).order_by(LoopRun.number.desc())
        if limit is not None:
            q = q.limit(limit)
        runs = list(s.scalars(q))
        steps: dict[str, list[StepInfo]] = {r.id: [] for r in runs}
        if runs:
            # By number, not by the limited query again: a run claimed between the two reads
            # would shift that window and leave the oldest listed run without its steps.
            rows = s.scalars(
                select(LoopStep)
                .join(LoopRun, LoopStep.run_id == LoopRun.id)
                .where(LoopRun.loop == loop, LoopRun.number >= runs[-1].number)
                .order_by(LoopStep.position)
            )
            for x in rows:
                if x.run_id in steps:  # a run started between the two reads is not listed
                    steps[x.run_id].append(_step(x))
        return [_run(s, r, steps[r.id]) for r in runs]


def is_paused(store: Store, loop: str) -> bool:
    with store.session() as s:
        state = s.get(LoopState, loop)
        return bool(state and state.paused)


def set_paused(store: Store, loop: str, paused: bool, *, actor: str = "cli") -> None:
    """Pause: no new run starts and a running one stops after its current step.
    Resume: the next ``loop run`` (or the scheduler) continues where it stopped."""
    with store.session() as s:
        state = s.get(LoopState, loop)
        if state is None:
            state = LoopState(name=loop)
            s.add(state)
        state.paused, state.actor, state.updated = paused, actor, now()
        audit(s, actor, "loop.pause" if paused else "loop.resume", loop=loop)


def request_cancel(store: Store, loop: str, *, actor: str = "cli") -> RunInfo | None:
    """Cancel the loop's unfinished run (a live one stops after its current step); it is
    never continued. Returns that run, or None when there was none."""
    with store.session() as s:
        run = s.scalar(
            select(LoopRun)
            .where(LoopRun.loop == loop, LoopRun.status.in_(UNFINISHED))
            .order_by(LoopRun.number.desc())
        )
        if run is None:
            return None
        run.status = "cancelled"
        run.finished = run.ended = now()
        audit(s, actor, "loop.cancel", loop=loop, run=run.number)
        s.flush()
        return _run(s, run)


def last_decided(store: Store, loop: str) -> RunInfo | None:
    """The loop's newest run that used its captures (promoted or rejected a candidate)."""
    with store.session() as s:
        run = s.scalar(
            select(LoopRun)
            .where(LoopRun.loop == loop, LoopRun.action.in_(("promote", "reject")))
            .order_by(LoopRun.number.desc())
        )
        return _run(s, run) if run is not None else None


def last_used_until(store: Store, loop: str) -> float | None:
    """Where the next run's captures begin: the end of the window the last run that used
    its captures collected (None: the start). What collect exports and the cadence counts."""
    previous = last_decided(store, loop)
    earlier = previous.step("collect") if previous is not None else None
    since = earlier.outputs.get("until") if earlier is not None else None
    return float(since) if since is not None else None


def last_ended(run: RunInfo) -> float:
    """When ``run`` last stopped running: its recorded end, else (a run that crashed, or
    one recorded before ends were) its newest step's end, else its start."""
    if run.ended is not None:
        return run.ended
    ends = [s.finished for s in run.steps if s.finished is not None]
    return max([run.finished or 0.0, *ends]) or run.created
