"""Loops on their cadence: which are due, and ``serve``, the long-running scheduler.

A loop is due ``every`` after its last run ended (a first run at once), or once
``every_captures`` new captures arrived, unless it is paused; a run that was paused and
then resumed continues at once (see :mod:`openclone.loop.cadence`); an erasure that taints
its promoted version makes it due at once by policy (:mod:`openclone.loop.taint`). Runs
go one at a time in this process: each trains a model, and two trainings at once would
only share the same cores. A failed run waits for the next turn (its finished steps stay
finished). A run waiting for its review is due once no example is pending, and not
before, whatever else says the loop is due: running it again would only wait again.

The server runs this in a child process (``run_loops``, :mod:`openclone.gateway.loops`),
which stops and starts it; a poll that fails (the database away a moment) is logged and
the next poll tries again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from openclone.config import Settings
from openclone.errors import OpenCloneError
from openclone.loop import cadence, review, taint, upstream_watch
from openclone.loop.config import LoopConfig, load_loops
from openclone.loop.runner import LoopRunner
from openclone.loop.state import is_paused, list_runs
from openclone.store import Store, open_store

__all__ = ["due", "next_due", "serve"]

log = logging.getLogger("openclone.loop")


def next_due(store: Store, config: LoopConfig, settings: Settings | None = None) -> float:
    """When the loop should run next by time (epoch seconds; 0: now; inf: never)."""
    return cadence.next_due(store, config, settings)


def _captures_due(store: Store, config: LoopConfig) -> bool:
    n = config.every_captures
    return n is not None and cadence.new_captures(store, config) >= n


def _due(store: Store, config: LoopConfig, now: float, settings: Settings | None) -> bool:
    if is_paused(store, config.name):
        return False
    last = list_runs(store, config.name, limit=1)
    if last and last[0].status == "waiting":
        return review.pending(store, last[0]) == 0
    return (
        cadence.next_due(store, config, settings, now) <= now
        or _captures_due(store, config)
        or taint.due_now(store, config)
    )


def due(
    store: Store, loops: list[LoopConfig], now: float, settings: Settings | None = None
) -> list[LoopConfig]:
    return [c for c in loops if _due(store, c, now, settings)]


def _watch_upstreams(store: Store, settings: Settings, loops: list[LoopConfig], now: float) -> None:
    """Read the models lists of the closed models the loops distil, each upstream at most
    once a day (:mod:`openclone.loop.upstream_watch`), before the cadence is decided: a
    shutdown date they report raises it. A failure here only loses that news."""
    try:
        upstream_watch.refresh(store, settings, loops, now)
    except Exception:
        log.exception("deprecation watch: could not read the upstreams' models lists")


def _ready(settings: Settings, loops: list[LoopConfig], now: float) -> list[LoopConfig]:
    """The due loops; none when the store cannot be read now (logged: the next poll
    tries again, so a database away for a moment does not end the scheduler)."""
    try:
        store = open_store(settings)
        try:
            _watch_upstreams(store, settings, loops, now)
            return due(store, loops, now, settings)
        finally:
            store.close()
    except Exception:
        log.exception("could not tell which loops are due; trying again at the next poll")
        return []


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
        for config in _ready(settings, loops, clock()):
            if stop.is_set():
                break
            started += 1
            try:
                run = LoopRunner(config, settings, say, stop=stop).run()
            except OpenCloneError as exc:  # one broken loop must not stop the others
                say(f"{config.name}: {exc}")
                continue
            except Exception as exc:  # nor a bug in one: the others keep their cadence
                say(f"{config.name}: {type(exc).__name__}: {exc}")
                continue
            say(f"{config.name}: run {run.number} {run.status}: {run.decision or '-'}")
        if once:
            break
        stop.wait(poll)
    return started
