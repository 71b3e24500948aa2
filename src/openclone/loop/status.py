"""What a person watches a loop by: its status now and its runs as a series.

- :func:`loop_status`: paused or not, its champion, its last run, when it runs next, the
  cost crossover and the deprecation watch — ``openclone loop status`` (``--json``: these
  dicts) and ``GET /api/admin/loops``;
- :func:`run_series`: per run, oldest first, what the admin page plots — the win rate
  against the incumbent and the teacher (with its CI), the teacher and training spend,
  and the serving against the API $/1M tokens as they stood when the run ended;
- :func:`find_loop`: a configured loop by name, or :class:`LoopNotFound` (a 404 over HTTP).
"""

from __future__ import annotations

import time
from typing import Any

from openclone.config import Settings
from openclone.errors import APIError, ModelNotFound
from openclone.loop.cadence import deprecation, new_captures, next_due
from openclone.loop.config import LoopConfig, load_loops
from openclone.loop.costs import crossover, run_spend
from openclone.loop.state import RunInfo, is_paused, iso_utc, last_ended, list_runs
from openclone.registry.versions import get_version
from openclone.store.db import Store

__all__ = [
    "SERIES_RUNS",
    "LoopNotFound",
    "deprecation_status",
    "find_loop",
    "loop_status",
    "run_series",
]

SERIES_RUNS = 50  # the newest runs a series holds by default: a chart stays readable
_RESULT_KEYS = ("win_rate", "ci_low", "ci_high", "n")


class LoopNotFound(APIError):
    status_code = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


def find_loop(settings: Settings, name: str) -> LoopConfig:
    """The ``[[loops]]`` entry named ``name``; :class:`LoopNotFound` when there is none."""
    loops = load_loops(settings)
    for loop in loops:
        if loop.name == name:
            return loop
    known = ", ".join(loop.name for loop in loops) or "none configured"
    raise LoopNotFound(f"no loop named {name!r} (loops: {known})", param="name")


def _reports(run: RunInfo) -> dict[str, Any]:
    """The evaluate step's report summaries, by reference (``incumbent``, ``teacher``)."""
    step = run.step("evaluate")
    return (step.outputs.get("reports") or {}) if step is not None else {}


def deprecation_status(
    settings: Settings,
    loop: LoopConfig,
    runs: list[RunInfo],
    now: float,
    store: Store | None = None,
) -> dict[str, Any] | None:
    """Days left before the closed model's shutdown, and the student's latest win rate
    against it (the teacher, in the newest evaluation); ``runs`` newest first. With
    ``store``, the date in force counts what the upstream's models list reported."""
    watch = deprecation(settings, loop, now, store)
    if watch is None:
        return None
    win_rate = None
    for run in runs:
        teacher = _reports(run).get("teacher")
        if teacher:
            win_rate = teacher.get("win_rate")
            break
    return {
        "model": watch.model,
        "shutdown": None if watch.date is None else watch.date.isoformat(),
        "days_left": watch.days_left,
        "near": watch.near,
        "student_win_rate": win_rate,
        "configured": None if watch.configured is None else watch.configured.isoformat(),
        "upstream": None if watch.upstream is None else watch.upstream.to_dict(),
    }


def loop_status(
    store: Store, settings: Settings, loop: LoopConfig, now: float | None = None
) -> dict[str, Any]:
    """The loop as ``openclone loop status --json`` shows it (one row of ``loops``)."""
    now = time.time() if now is None else now
    try:
        champion: str | None = get_version(store, loop.model).pinned
    except ModelNotFound:
        champion = None
    runs = list_runs(store, loop.name, limit=20)
    paused = is_paused(store, loop.name)
    due = next_due(store, loop, settings, now)
    return {
        "name": loop.name,
        "model": loop.model,
        "tenant": loop.tenant,
        "teacher": loop.teacher,
        "every": loop.every,
        "every_captures": loop.every_captures,
        "new_captures": new_captures(store, loop),
        "paused": paused,
        "champion": champion,
        "next_due": None if paused or due == float("inf") else iso_utc(max(due, 0.0) or None),
        "last_run": runs[0].to_dict() if runs else None,
        "deprecation": deprecation_status(settings, loop, runs, now, store),
        "costs": crossover(store, settings, loop, runs, now).to_dict(),
    }


def _result(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    """A report summary's win rate, CI bounds and prompts judged; None: not evaluated."""
    if not summary or summary.get("win_rate") is None:
        return None
    return {k: summary.get(k) for k in _RESULT_KEYS}


def run_series(
    store: Store, settings: Settings, loop: LoopConfig, limit: int = SERIES_RUNS
) -> list[dict[str, Any]]:
    """The newest ``limit`` runs, oldest first (the order a chart reads them in)."""
    runs = list_runs(store, loop.name, limit)
    series = []
    for run in reversed(runs):
        # The crossover as it stood when the run ended (the last 30 days up to then), so a
        # chart shows how serving and API $/1M moved; a run still going: as of its last step.
        ended = run.finished if run.finished is not None else last_ended(run)
        costs = crossover(store, settings, loop, [run], ended).to_dict()
        reports = _reports(run)
        series.append({
            "number": run.number,
            "status": run.status,
            "action": run.action,
            "decision": run.decision,
            "candidate": run.candidate,
            "started": iso_utc(run.created),
            "finished": iso_utc(run.finished),
            "ended": iso_utc(ended),
            "vs_incumbent": _result(reports.get("incumbent")),
            "vs_teacher": _result(reports.get("teacher")),
            **run_spend(run),
            "serving_usd_per_1m": costs["serving_usd_per_1m"],
            "api_usd_per_1m": costs["api_usd_per_1m"],
        })  # fmt: skip
    return series
