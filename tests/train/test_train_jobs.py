"""Training as a subprocess job: killed after a checkpoint, resumed, cancelled, finished."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from openclone.errors import InvalidRequestError
from openclone.jobs import (
    cancel_job,
    get_job,
    job_logs,
    list_jobs,
    resume_job,
    start_job,
    wait_job,
)
from openclone.jobs.runner import JobStatus
from train.train_helpers import fast_config, write_teaching_set

pytestmark = pytest.mark.slow


def _wait_for(job_id: str, ready: Path | None = None, step: int = 0) -> JobStatus:
    """Until ``ready`` exists or the job reports ``step``; fails if the job ends first."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = get_job(job_id)
        if (ready is not None and ready.is_file()) or (step and status.step >= step):
            return status
        assert not status.done, f"job ended early ({status.state}):\n{job_logs(job_id)}"
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for job {job_id}:\n{job_logs(job_id)}")


def test_killed_run_resumes_from_checkpoint_and_cancel_checkpoints_first(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = fast_config(
        write_teaching_set(tmp_path / "teach.jsonl", n=4),
        run,
        name="resumable",
        register="helper",
        max_steps=8,
        save_steps=2,
        eval_fraction=0.0,
        max_length=64,
    )
    job = start_job("train", cfg.to_dict())
    assert [j.id for j in list_jobs()] == [job.id]

    # A crash: SIGKILL right after the first checkpoint is complete.
    _wait_for(job.id, ready=run / "checkpoints" / "checkpoint-2" / "trainer_state.json")
    assert job.pid is not None
    os.killpg(job.pid, signal.SIGKILL)
    crashed = wait_job(job.id, timeout=60, poll=0.1)
    assert crashed.state == "failed" and "died" in (crashed.error or "")

    # Resumed, then cancelled: the worker saves a checkpoint at the step where it stops.
    assert resume_job(job.id).attempt == 2
    _wait_for(job.id, step=4)
    cancelled = cancel_job(job.id, grace=120)
    assert cancelled.state == "cancelled", job_logs(job.id)
    stopped_at = cancelled.result["final_step"]
    assert 4 <= stopped_at < 8
    assert (run / "checkpoints" / f"checkpoint-{stopped_at}" / "trainer_state.json").is_file()

    # Resumed again, it finishes at max_steps with one unbroken loss history.
    resume_job(job.id)
    done = wait_job(job.id, timeout=300)
    logs = job_logs(job.id)
    assert done.state == "succeeded", logs
    assert done.attempt == 3 and done.result["final_step"] == done.result["max_steps"] == 8
    # The finished run is in the registry: under its own name, and as a candidate "helper".
    assert done.result["registered"] == ["resumable@1", "helper@1"]
    assert "resume from " + str(run / "checkpoints" / f"checkpoint-{stopped_at}") in logs
    curve = json.loads((run / "report" / "loss.json").read_text())["train"]
    assert [int(s) for s, _ in curve] == list(range(1, 9))
    assert (run / "adapter" / "adapter_model.safetensors").is_file()


def test_unknown_and_unfinished_jobs_are_refused() -> None:
    with pytest.raises(InvalidRequestError, match="no job 'nope'"):
        get_job("nope")
    with pytest.raises(InvalidRequestError, match="unknown job kind"):
        start_job("bake", {})
