"""The retraining loops inside the server (``run_loops = true`` or ``serve --loops``).

The scheduler (:func:`openclone.loop.schedule.serve`, what ``openclone loop start`` runs as
a job) runs in one daemon thread: a run trains a model for minutes, so it must never run on
the event loop, and it opens its own store connections. A run that fails is logged and
recorded in its run; the thread goes on with the next turn, and the server never notices.

On shutdown the thread is told to stop: a run under way stops after its current step and
is recorded ``paused``, so the next start continues it at once. A step can take long (a
training), so shutdown waits only ``GRACE`` seconds for it; if the process then exits
mid-step, the step's run is continued like any crashed one (distill keeps its rows,
training resumes from its checkpoint).
"""

from __future__ import annotations

import asyncio
import logging
import threading

from openclone.config import Settings
from openclone.loop.schedule import serve

__all__ = ["GRACE", "LoopThread"]

log = logging.getLogger("openclone.gateway")
GRACE = 5.0  # seconds shutdown waits for the current step


class LoopThread:
    def __init__(self, settings: Settings, poll: float = 60.0) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._main, args=(settings, poll), name="loops", daemon=True
        )

    def start(self) -> LoopThread:
        self._thread.start()
        return self

    def _main(self, settings: Settings, poll: float) -> None:
        try:
            serve(settings, lambda message: log.info("loop: %s", message), poll=poll,
                  stop=self._stop)  # fmt: skip
        except Exception:  # a broken [[loops]] table: the gateway serves on without loops
            log.exception("the loops stopped")

    async def close(self) -> None:
        """Stop between steps; wait up to ``GRACE`` seconds, off the event loop."""
        self._stop.set()
        await asyncio.to_thread(self._thread.join, GRACE)
        if self._thread.is_alive():
            log.info("a loop step is still running; its run continues on the next start")
