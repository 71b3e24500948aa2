"""Long work as subprocess jobs: start, watch, cancel, resume.

A job is a directory ``$OPENCLONE_HOME/jobs/<id>/`` holding ``spec.json`` (what to run),
``status.json`` (state, progress, pid) and ``log.txt`` (everything the worker prints), and a
process ``python -m openclone.jobs.worker <dir>`` in its own session, so it outlives the
command that started it and a Ctrl-C in that terminal does not reach it. The worker writes
the status; this side writes it only before the worker starts and after it is gone. A job
whose status says running but whose process is dead crashed, and is reported as failed.

Every attempt's status names its own worker: the launcher records the new process (pid and
start time) before it lets the worker begin, so no reader ever judges an attempt by the
process of the one before, and a worker that is still starting counts as alive.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from openclone.config import openclone_home
from openclone.errors import InvalidRequestError
from openclone.files import atomic_write, make_private_dir
from openclone.procs import alive as _alive
from openclone.procs import proc_stat as _proc_stat

__all__ = [
    "FINAL_STATES",
    "GO_AHEAD",
    "JobStatus",
    "cancel_job",
    "get_job",
    "job_api_key",
    "job_logs",
    "jobs_dir",
    "list_jobs",
    "resume_job",
    "start_job",
    "wait_job",
    "write_status",
]

State = Literal["queued", "running", "succeeded", "failed", "cancelled"]
# A job's API key (a distill teacher's, an eval's models') travels in the worker's
# environment, never in spec.json: the job directory is plain files.
API_KEY_ENV = "OPENCLONE_JOB_API_KEY"
FINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})
# What the launcher writes to a new worker's stdin once the attempt's status is recorded; a
# worker whose stdin closes without it (its launcher died first) leaves the job alone.
GO_AHEAD = b"go"


@dataclass
class JobStatus:
    id: str
    kind: str
    state: State = "queued"
    step: int = 0
    total: int = 0
    message: str = ""
    pid: int | None = None
    # The worker's start time in clock ticks after boot (procfs; None without it). It tells
    # the worker from a later process given the same pid, even while the worker is in exec.
    pid_start: int | None = None
    attempt: int = 1
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.state in FINAL_STATES


def jobs_dir() -> Path:
    return openclone_home() / "jobs"


def _dir(job_id: str) -> Path:
    path = jobs_dir() / job_id
    if not job_id or "/" in job_id or not (path / "spec.json").is_file():
        raise InvalidRequestError(
            f"no job {job_id!r}; `openclone jobs list` shows them",
            param="job",
            code="job_not_found",
        )
    return path


def write_status(job_dir: Path, status: JobStatus) -> None:
    """Atomic: readers see the old status or the new one, never half of one."""
    atomic_write(job_dir / "status.json", json.dumps(asdict(status), indent=2))


def _read_status(job_dir: Path) -> JobStatus:
    return JobStatus(**json.loads((job_dir / "status.json").read_text(encoding="utf-8")))


def get_job(job_id: str) -> JobStatus:
    """The job's status; a running job whose process died is marked failed here."""
    job_dir = _dir(job_id)
    status = _read_status(job_dir)
    if status.done or status.pid is None or _alive(status.pid, status.pid_start, status.id):
        return status
    # Its process is gone. A worker writes its last status before it exits, and a resume may
    # have launched another attempt meanwhile: if the status changed, judge the new one.
    latest = _read_status(job_dir)
    if latest != status:
        return get_job(job_id)
    latest.state = "failed"
    latest.error = "the worker process died without finishing (killed or crashed); resume it"
    latest.finished = time.time()
    write_status(job_dir, latest)
    return latest


def list_jobs() -> list[JobStatus]:
    """Every job, newest first."""
    root = jobs_dir()
    ids = [p.parent.name for p in root.glob("*/spec.json")] if root.is_dir() else []
    return sorted((get_job(i) for i in ids), key=lambda s: s.created, reverse=True)


def _launch(job_dir: Path, status: JobStatus, api_key: str | None = None) -> JobStatus:
    """Start a worker for the attempt ``status`` describes and record it before it may run.

    The worker waits for :data:`GO_AHEAD` on its stdin before it reads ``status.json``, so it
    always reads this attempt, with its own pid, and never the status of the one before.
    """
    with (job_dir / "log.txt").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "openclone.jobs.worker", str(job_dir)],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            bufsize=0,
            env={
                **os.environ,
                "OPENCLONE_HOME": str(openclone_home()),
                "PYTHONUNBUFFERED": "1",
                "TQDM_DISABLE": "1",  # progress bars in a log file are noise; status has progress
                **({API_KEY_ENV: api_key} if api_key else {}),
            },
        )
    assert proc.stdin is not None
    with proc.stdin:  # closed without the go-ahead when recording fails: the worker gives up
        stat = _proc_stat(proc.pid)
        status.pid, status.pid_start = proc.pid, stat[1] if stat else None
        write_status(job_dir, status)
        with contextlib.suppress(BrokenPipeError):  # it died already; get_job will say so
            proc.stdin.write(GO_AHEAD)
    return status


def start_job(kind: str, spec: dict[str, Any], api_key: str | None = None) -> JobStatus:
    """Create a job running ``kind`` (see ``openclone.jobs.worker.KINDS``) on ``spec``.

    ``api_key`` reaches the worker through its environment only (see :func:`job_api_key`);
    a resumed job has none, and uses ``OPENAI_API_KEY`` from the command that resumes it.
    """
    from openclone.jobs.worker import KINDS

    if kind not in KINDS:
        raise InvalidRequestError(f"unknown job kind {kind!r}; known: {', '.join(sorted(KINDS))}")
    job_id = f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    job_dir = jobs_dir() / job_id
    make_private_dir(job_dir.parent)  # the first job may be what creates the home: 0700
    job_dir.mkdir(mode=0o700)
    status = JobStatus(id=job_id, kind=kind)
    write_status(job_dir, status)  # before spec.json, which makes the job visible
    (job_dir / "spec.json").write_text(json.dumps({"kind": kind, "spec": spec}, indent=2))
    return _launch(job_dir, status, api_key)


def job_api_key() -> str | None:
    """In a worker: the key its job was started with, else ``OPENAI_API_KEY``."""
    return os.environ.get(API_KEY_ENV) or os.environ.get("OPENAI_API_KEY")


def resume_job(job_id: str) -> JobStatus:
    """Start a failed or cancelled job again; the worker continues from its last checkpoint."""
    status = get_job(job_id)
    if not status.done:
        raise InvalidRequestError(f"job {job_id} is still {status.state}", param="job")
    if status.state == "succeeded":
        raise InvalidRequestError(f"job {job_id} already succeeded", param="job")
    job_dir = _dir(job_id)
    data = json.loads((job_dir / "spec.json").read_text())
    data["resume"] = True
    (job_dir / "spec.json").write_text(json.dumps(data, indent=2))
    again = JobStatus(
        id=job_id, kind=status.kind, attempt=status.attempt + 1, created=status.created
    )
    return _launch(job_dir, again)


def cancel_job(job_id: str, grace: float = 30.0) -> JobStatus:
    """SIGTERM (the worker checkpoints and stops), then SIGKILL after ``grace`` seconds."""
    status = get_job(job_id)
    if status.done or status.pid is None:
        return status
    try:
        os.killpg(status.pid, signal.SIGTERM)
    except ProcessLookupError:
        return get_job(job_id)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(status.pid, status.pid_start, status.id):
        time.sleep(0.2)
    if _alive(status.pid, status.pid_start, status.id):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(status.pid, signal.SIGKILL)
        while _alive(status.pid, status.pid_start, status.id):
            time.sleep(0.05)
    status = _read_status(_dir(job_id))
    if not status.done:  # killed before it could say so itself
        status.state, status.finished = "cancelled", time.time()
        write_status(_dir(job_id), status)
    return status


def job_logs(job_id: str, tail: int | None = None) -> str:
    """The job's log text (its last ``tail`` lines when given)."""
    path = _dir(job_id) / "log.txt"
    text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    if tail is not None:
        text = "".join(text.splitlines(keepends=True)[-tail:])
    return text


def wait_job(job_id: str, timeout: float | None = None, poll: float = 0.5) -> JobStatus:
    """Block until the job is done (or ``timeout`` passes); return its status."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        status = get_job(job_id)
        if status.done or (deadline is not None and time.monotonic() >= deadline):
            return status
        time.sleep(poll)
