"""Loops on their cadence: which are due, and ``serve``, the long-running scheduler.

A loop is due ``every`` after its last run began (a first run at once), unless it is
paused; a run that was paused and then resumed continues at once. Runs go one at a time
in this process: each trains a model, and two trainings at once would only share the
same cores. A failed run waits for the next turn (its finished steps stay finished).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from openclone.config import Settings
from openclone.errors import OpenCloneError
from openclone.loop.config import LoopConfig, load_loops
from openclone.loop.runner import LoopRunner
from openclone.loop.state import is_paused, list_runs
from openclone.store import Store, open_store

__all__ = ["due", "next_due", "serve"]


def next_due(store: Store, config: LoopConfig) -> float:
    """When the loop should run next (epoch seconds; 0: now)."""
    runs = list_runs(store, config.name, limit=1)
    if not runs:
        return 0.0
    last = runs[0]
    if last.status == "paused":
        return 0.0
    return last.created + config.every_seconds


def due(store: Store, loops: list[LoopConfig], now: float) -> list[LoopConfig]:
    return [c for c in loops if not is_paused(store, c.name) and next_due(store, c) <= now]


def serve(
    settings: Settings,
    say: Callable[[str], None],
    *,
    poll: float = 60.0,
    once: bool = False,
    stop: threading.Event | None = None,
    clock: Callable[[], float] | None = None,
) -> int:
    """Run due loops until ``stop`` is set (every ``poll`` seconds), or once with ``once``.
    Returns how many runs were started."""
    import time

    stop = stop or threading.Event()
    clock = clock or time.time
    loops = load_loops(settings)
    started = 0
    while not stop.is_set():
        store = open_store(settings)
        try:
            ready = due(store, loops, clock())
        finally:
            store.close()
        for config in ready:
            if stop.is_set():
                break
            started += 1
            try:
                run = LoopRunner(config, settings, say).run()
            except OpenCloneError as exc:  # one broken loop must not stop the others
                say(f"{config.name}: {exc}")
                continue
            say(f"{config.name}: run {run.number} {run.status}: {run.decision or '-'}")
        if once:
            break
        stop.wait(poll)
    return started
