"""When a loop is due: its period (shortened as a closed model's shutdown nears) counted
from when its last run ended, or enough new captures, whichever comes first.

The period counts from the end of the last run, not its start: a run that took longer
than ``every`` would otherwise make the next one due the moment it finished, and a slow
loop would run back to back. A run that was stopped half-way (``paused`` by a server
shutting down, or by ``loop pause`` and then resumed) continues at once, and so does one
whose process died mid-run (killed, out of memory, a machine restarted), up to
``MAX_TAKEOVERS`` times: after that it waits for its next turn, as a failed run does.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from sqlalchemy import func, select

from openclone.config import Settings
from openclone.loop.config import LoopConfig
from openclone.loop.state import RunInfo, last_ended, last_used_until, list_runs, orphaned
from openclone.loop.upstream_watch import UpstreamReport, effective_date, report
from openclone.store.db import Store
from openclone.store.export import CaptureFilter

__all__ = ["Deprecation", "deprecation", "new_captures", "next_due", "period"]

DAY = 86400.0
# A run whose process died under it is continued at once this many times; one that keeps
# killing its process (out of memory in training, say) then waits for its next turn.
MAX_TAKEOVERS = 2


@dataclass(frozen=True)
class Deprecation:
    """An announced shutdown of the closed model a loop distils."""

    model: str
    # The effective date: the earlier of the configured and reported ones; None for a model
    # its upstream lists as deprecated without a date (it may stop any day: "near").
    date: dt.date | None
    days_left: int | None  # negative once the date has passed
    near: bool  # within the loop's ``deprecation_days``: its cadence is raised
    configured: dt.date | None = None  # ``[deprecations]`` in openclone.toml
    upstream: UpstreamReport | None = None  # what the upstream's models list said


def deprecation(
    settings: Settings, config: LoopConfig, now: float, store: Store | None = None
) -> Deprecation | None:
    """The shutdown date of the loop's teacher or captured model: the configured one, or
    (with ``store``) the one its upstream's models list reports, whichever is earlier; a
    model gone from that list shuts down today, and one it lists as deprecated with no date
    is near however far away the loop's ``deprecation_days`` reach."""
    today = dt.datetime.fromtimestamp(now, dt.UTC).date()
    for model in (config.teacher, config.capture_model):
        if not model:
            continue
        configured = settings.deprecations.get(model)
        reported = report(store, settings, model) if store is not None else None
        date = effective_date(configured, reported, today)
        # Deprecated upstream with no date: it may stop any day, whatever was configured.
        undated = reported is not None and reported.state == "deprecated" and not reported.shutdown
        if date is not None:
            left = (date - today).days
            near = left <= config.deprecation_days or undated
            return Deprecation(model, date, left, near, configured, reported)
        if undated:
            return Deprecation(model, None, None, True, configured, reported)
    return None


def period(
    settings: Settings | None, config: LoopConfig, now: float, store: Store | None = None
) -> float:
    """Seconds between runs now: ``deprecation_every`` near a shutdown, else ``every``."""
    watch = deprecation(settings, config, now, store) if settings is not None else None
    if watch is not None and watch.near:
        return min(config.every_seconds, config.deprecation_every_seconds)
    return config.every_seconds


def _last(store: Store, config: LoopConfig) -> RunInfo | None:
    runs = list_runs(store, config.name, limit=1)
    return runs[0] if runs else None


def next_due(
    store: Store, config: LoopConfig, settings: Settings | None = None, now: float = 0.0
) -> float:
    """When the period makes the loop due (epoch seconds; 0: now; inf: never by time)."""
    last = _last(store, config)
    if last is None or last.status == "paused":
        return 0.0
    if last.status == "running" and last.takeovers < MAX_TAKEOVERS and orphaned(store, last.id):
        return 0.0  # its process died mid-run: continue it now, not a period later
    return last_ended(last) + period(settings, config, now or time.time(), store)


def new_captures(store: Store, config: LoopConfig) -> int:
    """Consented chat captures the next run would collect (since the last run that used
    its data), as the collect step counts them before dedupe."""
    since = last_used_until(store, config.name)
    filters = CaptureFilter(tenant=config.tenant, model=config.capture_model, since=since)
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(filters.query().subquery())) or 0)
