"""The retraining loops beside the server (``run_loops = true`` or ``serve --loops``).

A loop run distils and trains a model with torch: native code the gateway never loads
(a crash in it would take the server down). So the server runs the scheduler as a child,
``python -m openclone loop start --config <its config>``, and supervises it as it does an
engine worker (:mod:`openclone.engines.supervised`):

* a child that dies (a crash, the OOM killer) is started again after a backoff (1 s,
  doubling to 60 s; back to 1 s once a child stayed up a minute), and logged; the server
  serves on, whatever the loops do;
* on shutdown the child gets SIGTERM: it records its run ``paused`` and exits, and the
  next start continues the run at once; after ``GRACE`` seconds it gets SIGKILL, and its
  run is continued like any crashed one once its lease lapses (on this host at once);
* the child runs in its own session, so a Ctrl-C in the server's terminal reaches the
  server alone, and it is told the server's pid, so it stops when the server dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from openclone.engines.supervised import exit_reason

__all__ = ["GRACE", "LoopProcess", "loop_argv"]

log = logging.getLogger("openclone.gateway")
GRACE = 10.0  # seconds a child has after SIGTERM before SIGKILL


@dataclass(frozen=True)
class Backoff:
    first: float = 1.0
    most: float = 60.0
    stable_after: float = 60.0  # a child up this long resets it


def loop_argv(config_file: Path | None, parent: int) -> list[str]:
    """The child's command line: the server's own config file, else the same lookup."""
    argv = [sys.executable, "-m", "openclone", "loop", "start", "--parent", str(parent)]
    return argv + (["--config", str(config_file)] if config_file is not None else [])


class LoopProcess:
    """``openclone loop start`` as the server's supervised child."""

    def __init__(self, argv: list[str], backoff: Backoff = Backoff(), grace: float = GRACE):
        self.argv, self.backoff, self.grace = argv, backoff, grace
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> LoopProcess:
        self._task = asyncio.create_task(self._supervise(), name="loops")
        return self

    async def _supervise(self) -> None:
        wait = self.backoff.first
        while not self._closing.is_set():
            began = time.monotonic()
            reason = await self._run_child()
            if reason is None:  # stopped by close()
                return
            if time.monotonic() - began >= self.backoff.stable_after:
                wait = self.backoff.first
            log.error("the loops process %s; starting it again in %.0f s", reason, wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), wait)
            wait = min(wait * 2, self.backoff.most)

    async def _run_child(self) -> str | None:
        """Run one child until it exits (why, in words) or the server closes (None)."""
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.DEVNULL, start_new_session=True
            )
        except OSError as exc:  # out of processes or memory: try again after the backoff
            return f"could not be started: {exc}"
        log.info("the loops process started (pid %d)", proc.pid)
        exited = asyncio.ensure_future(proc.wait())
        closing = asyncio.ensure_future(self._closing.wait())
        await asyncio.wait({exited, closing}, return_when=asyncio.FIRST_COMPLETED)
        closing.cancel()
        if exited.done():
            return exit_reason(exited.result())
        proc.send_signal(signal.SIGTERM)  # it records its run paused and exits
        try:
            await asyncio.wait_for(asyncio.shield(exited), self.grace)
        except TimeoutError:
            log.warning("the loops process did not stop in %.0f s; killing it", self.grace)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await exited
        return None

    async def close(self) -> None:
        """SIGTERM the child, SIGKILL it after ``grace`` seconds; wait until it is gone."""
        self._closing.set()
        if self._task is not None:
            await self._task
