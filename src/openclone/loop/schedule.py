"""Loops on their cadence: which are due, and ``serve``, the long-running scheduler.

A loop is due ``every`` after its last run ended (a first run at once), or once
``every_captures`` new captures arrived, unless it is paused; a run that was paused and
then resumed continues at once (see :mod:`openclone.loop.cadence`); an erasure that taints
its promoted version makes it due at once by policy (:mod:`openclone.loop.taint`). Runs
go one at a time in this process: each trains a model, and two trainings at once would
only share the same cores. A failed run waits for the next turn (its finished steps stay
finished).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from openclone.config import Settings
from openclone.errors import OpenCloneError
from openclone.loop import cadence, taint
from openclone.loop.config import LoopConfig, load_loops
from openclone.loop.runner import LoopRunner
from openclone.loop.state import is_paused
from openclone.store import Store, open_store

__all__ = ["due", "next_due", "serve"]


def next_due(store: Store, config: LoopConfig, settings: Settings | None = None) -> float:
    """When the loop should run next by time (epoch seconds; 0: now; inf: never)."""
    return cadence.next_due(store, config, settings)


def _captures_due(store: Store, config: LoopConfig) -> bool:
    n = config.every_captures
    return n is not None and cadence.new_captures(store, config) >= n


def due(
    store: Store, loops: list[LoopConfig], now: float, settings: Settings | None = None
) -> list[LoopConfig]:
    return [
        c
        for c in loops
        if not is_paused(store, c.name)
        and (
            cadence.next_due(store, c, settings, now) <= now
            or _captures_due(store, c)
            or taint.due_now(store, c)
        )
    ]


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
            ready = due(store, loops, clock(), settings)
        finally:
            store.close()
        for config in ready:
            if stop.is_set():
                break
            started += 1
            try:
                run = LoopRunner(config, settings, say, stop=stop).run()
            except OpenCloneError as exc:  # one broken loop must not stop the others
                say(f"{config.name}: {exc}")
                continue
            except Exception as exc:  # nor a bug in one: a server runs this in its thread
                say(f"{config.name}: {type(exc).__name__}: {exc}")
                continue
            say(f"{config.name}: run {run.number} {run.status}: {run.decision or '-'}")
        if once:
            break
        stop.wait(poll)
    return started
