"""Job liveness: an attempt is judged by its own worker, from the moment it is launched.

The workers here are real processes running a distill job whose spec fails in the worker
(a bad date), so each attempt ends quickly with the worker's own verdict; a job reported
as "died" would be the launcher judging a live or finished worker wrongly.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from openclone.jobs import (
    cancel_job,
    get_job,
    job_logs,
    jobs_dir,
    resume_job,
    runner,
    start_job,
    wait_job,
)
from openclone.jobs.runner import JobStatus, write_status

pytestmark = pytest.mark.slow


def _failing_spec(tmp_path: Path) -> dict[str, Any]:
    return {"out": str(tmp_path / "rows.jsonl"), "count": 1, "since": "last week"}


def _failed_by_worker(job_id: str) -> JobStatus:
    status = wait_job(job_id, timeout=300)
    assert status.state == "failed", job_logs(job_id)
    assert "expected a date" in (status.error or ""), job_logs(job_id)
    return status


def test_a_resumed_job_is_judged_by_its_new_worker_while_it_starts(tmp_path: Path) -> None:
    job = start_job("distill", _failing_spec(tmp_path))
    first = _failed_by_worker(job.id)
    # Just after the launch the new worker is mid-exec, its command line still empty: each
    # time, a liveness check that judged by it (or by the old pid) reported "died".
    for attempt in range(2, 7):
        resumed = resume_job(job.id)
        seen = get_job(job.id)
        assert (seen.attempt, seen.pid) == (attempt, resumed.pid)
        assert not seen.done or seen.error == first.error, job_logs(job.id)
        done = _failed_by_worker(job.id)
        assert (done.attempt, done.pid, done.error) == (attempt, resumed.pid, first.error)


def test_a_new_worker_waits_until_the_launcher_has_recorded_its_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = start_job("distill", _failing_spec(tmp_path))
    first = _failed_by_worker(job.id)
    status_file = jobs_dir() / job.id / "status.json"
    record = runner.write_status

    def slow_record(job_dir: Path, status: JobStatus) -> None:
        # A loaded machine: the launcher is slow to record the attempt. A worker that did not
        # wait for it would meanwhile start on the last attempt's status (and its dead pid).
        before, deadline = status_file.read_bytes(), time.monotonic() + 5
        while status_file.read_bytes() == before and time.monotonic() < deadline:
            time.sleep(0.05)
        record(job_dir, status)

    with monkeypatch.context() as mp:
        mp.setattr(runner, "write_status", slow_record)
        resumed = resume_job(job.id)
    done = _failed_by_worker(job.id)
    assert (done.attempt, done.pid, done.error) == (2, resumed.pid, first.error)
    assert done.started is not None and done.finished is not None
    assert done.started <= done.finished


def test_a_job_cancelled_as_its_worker_starts_is_not_reported_dead(tmp_path: Path) -> None:
    job = start_job("distill", _failing_spec(tmp_path))
    stopped = cancel_job(job.id, grace=120)
    # Cancelled, unless the worker got as far as its own verdict first (a busy machine).
    assert stopped.state == "cancelled" or stopped.error == _failed_by_worker(job.id).error


def test_a_worker_is_known_by_its_start_time_not_its_command_line(tmp_path: Path) -> None:
    job = start_job("distill", _failing_spec(tmp_path))
    _failed_by_worker(job.id)
    job_dir = jobs_dir() / job.id
    # A stand-in worker whose command line does not name the job, as a real one's reads empty
    # while exec runs; then the same pid as a later process would hold it (a recycled pid).
    with subprocess.Popen(["sleep", "300"]) as proc:
        stat = runner._proc_stat(proc.pid)
        assert stat is not None
        worker = JobStatus(id=job.id, kind="distill", state="running", pid=proc.pid, attempt=2)
        write_status(job_dir, replace(worker, pid_start=stat[1]))
        assert get_job(job.id).state == "running"
        write_status(job_dir, replace(worker, pid_start=stat[1] - 1))
        assert "died" in (get_job(job.id).error or "")
        proc.kill()
