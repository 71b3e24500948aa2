"""``openclone distill --detach``: the same run as a background job, with the bundled model
as the teacher in the job's own process."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from standins import JSONHandler, chat_reply, loopback
from typer.testing import CliRunner

from openclone.cli import app
from openclone.jobs import cancel_job, get_job, job_logs, jobs_dir, list_jobs, wait_job

pytestmark = pytest.mark.slow
runner = CliRunner()


def _prompts(path: Path, n: int) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            row = {"messages": [{"role": "user", "content": f"Write one sentence about the number {i}."}]}  # fmt: skip
            f.write(json.dumps(row) + "\n")
    return path


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _start(args: list[str]) -> str:
    result = runner.invoke(app, ["distill", *args, "--detach"])
    assert result.exit_code == 0, result.output
    (job,) = [j for j in list_jobs() if j.kind == "distill" and j.id in result.output]
    return job.id


def test_a_detached_run_finishes_as_a_job_with_its_dataset_and_card(tmp_path: Path) -> None:
    out = tmp_path / "answers.jsonl"
    job_id = _start(
        ["--prompts", str(_prompts(tmp_path / "p.jsonl", 3)), "--count", "3", "--out", str(out),
         "--answer-max-tokens", "12", "--keep-truncated", "--answer-temperature", "0"]
    )  # fmt: skip
    status = wait_job(job_id, timeout=300)
    assert status.state == "succeeded", job_logs(job_id)
    assert (status.step, status.total) == (3, 3)
    assert status.result["status"] == "complete" and status.result["kept"] == 3
    assert len(_rows(out)) == 3
    assert json.loads(out.with_suffix(".card.json").read_text())["status"] == "complete"


def test_a_cancelled_job_keeps_its_rows_and_the_same_command_continues(tmp_path: Path) -> None:
    out = tmp_path / "answers.jsonl"
    prompts = _prompts(tmp_path / "p.jsonl", 60)
    args = ["--prompts", str(prompts), "--out", str(out), "--concurrency", "1",
            "--answer-max-tokens", "24", "--keep-truncated", "--answer-temperature", "0"]  # fmt: skip
    job_id = _start([*args, "--count", "60"])
    deadline = time.monotonic() + 300
    while get_job(job_id).step < 2:
        assert not get_job(job_id).done, job_logs(job_id)
        assert time.monotonic() < deadline, job_logs(job_id)
        time.sleep(0.1)
    status = cancel_job(job_id)
    assert status.state == "cancelled", job_logs(job_id)
    kept = len(_rows(out))
    assert 2 <= kept < 60
    assert json.loads(out.with_suffix(".card.json").read_text())["status"] == "interrupted"

    # The rows the job wrote are kept; the same command goes on from them.
    result = runner.invoke(app, ["distill", *args, "--count", str(kept + 1)])
    assert result.exit_code == 0, result.output
    assert "(1 new)" in result.output
    rows = _rows(out)
    assert len(rows) == kept + 1
    assert len({json.dumps(r["messages"][:-1]) for r in rows}) == kept + 1  # no prompt twice


class _Teacher(JSONHandler):
    """An OpenAI-shaped teacher that remembers the Authorization headers it was sent."""

    seen: list[str] = []

    def do_POST(self) -> None:
        self.seen.append(self.headers.get("Authorization", ""))
        self.read_json()
        self.send_json(chat_reply("t", "One sentence.", 5, 2))


def test_the_teacher_key_reaches_the_job_but_never_its_files(tmp_path: Path) -> None:
    out = tmp_path / "answers.jsonl"
    secret = "sk-test-never-on-disk-1234567890"
    with loopback(_Teacher) as url:
        job_id = _start(
            ["--prompts", str(_prompts(tmp_path / "p.jsonl", 1)), "--count", "1",
             "--out", str(out), "--base-url", f"{url}/v1", "--api-key", secret]
        )  # fmt: skip
        status = wait_job(job_id, timeout=120)
    assert status.state == "succeeded", job_logs(job_id)
    assert _Teacher.seen and set(_Teacher.seen) == {f"Bearer {secret}"}
    for path in (jobs_dir() / job_id).iterdir():
        assert secret not in path.read_text(encoding="utf-8", errors="replace"), path.name


def test_an_unknown_teacher_is_refused_before_a_job_starts(tmp_path: Path) -> None:
    before = len(list_jobs())
    result = runner.invoke(
        app, ["distill", "--count", "1", "--out", str(tmp_path / "x.jsonl"), "--teacher",
              "gpt-9", "--detach"]
    )  # fmt: skip
    assert result.exit_code == 1 and "unknown teacher model 'gpt-9'" in result.output
    assert len(list_jobs()) == before
