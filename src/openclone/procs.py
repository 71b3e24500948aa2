"""Telling a detached worker from a later process given its pid, and stopping one.

Below every layer, so the store can stop a job's worker when an erasure removes the job
(:func:`openclone.store.fine_tuning.erase_tenant_jobs`) and the job runner can watch it
(:mod:`openclone.jobs.runner`) with the same test of life.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

__all__ = ["alive", "kill_group", "proc_stat"]


def proc_stat(pid: int) -> tuple[str, int] | None:
    """``pid``'s state letter and start time (clock ticks after boot) from procfs, or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def alive(pid: int, pid_start: int | None, job_id: str = "") -> bool:
    """Is the worker that started as ``pid`` at ``pid_start`` still running? Zombies and
    recycled pids count as dead.

    The worker is recognised by its start time, which fork sets and exec keeps; not by its
    command line, which reads empty while exec runs, just after the launcher has started it.
    """
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own exited child
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists; whose it is, procfs tells
    if not Path("/proc/self/stat").is_file():  # no procfs (macOS): the signal is all there is
        return True
    stat = proc_stat(pid)
    if stat is None:  # gone since the signal
        return False
    state, started = stat
    if state in ("Z", "X"):
        return False
    if pid_start is None:  # a status written before start times were kept: the old test
        try:
            return job_id in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return False
    return pid_start == started


def kill_group(pid: int, pid_start: int | None, job_id: str = "", wait: float = 5.0) -> bool:
    """SIGKILL the process group the worker ``pid`` leads, if it is still that worker, and
    wait up to ``wait`` seconds for it to be gone; whether it is gone."""
    if not alive(pid, pid_start, job_id):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait
    while alive(pid, pid_start, job_id):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
