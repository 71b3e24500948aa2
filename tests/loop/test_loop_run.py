"""A whole loop run on CPU with the bundled model as teacher, student base and judge, and a
run killed after its distill step that continues without asking the teacher again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from loop.helpers import MINIMAL, QUESTIONS, add_captures, standin_teacher, write_config
from openclone.cli import app
from openclone.config import load_settings
from openclone.files import file_sha256
from openclone.loop.state import list_runs
from openclone.registry.versions import decisions, list_versions
from openclone.store import open_store

pytestmark = pytest.mark.slow
runner = CliRunner()


def _history(config: Path) -> dict[str, Any]:
    result = runner.invoke(app, ["loop", "history", "support", "--json", "--config", str(config)])
    assert result.exit_code == 0, result.output
    runs: list[dict[str, Any]] = json.loads(result.stdout)["runs"]
    return runs[0]


def test_a_loop_run_goes_through_every_step_and_records_its_decision(tmp_path: Path) -> None:
    # The minimal loop, its budgets cut further and verdicts kept short: 20 steps,
    # and verdicts written through a JSON grammar, take minutes on 2 busy cores. Answers
    # get room (the 135M teacher's run long, and a cut answer is dropped: at 96 tokens
    # all ten could be) and every question is captured.
    small = MINIMAL.replace("examples = 8", "examples = 4").replace(
        "train_steps = 20", "train_steps = 2"
    )
    small = small.replace("eval_prompts = 6", "eval_prompts = 2").replace(
        'every = "1d"', 'every = "1d"\neval_max_tokens = 48\nanswer_max_tokens = 256'
    )
    config = write_config(tmp_path / "openclone.toml", small)
    add_captures(config, len(QUESTIONS))

    result = runner.invoke(app, ["loop", "run", "support", "--config", str(config)])

    assert result.exit_code == 0, result.output
    run = _history(config)
    assert run["status"] == "finished"
    assert [s["name"] for s in run["steps"]] == [
        "collect", "curate", "distill", "review", "train", "evaluate", "shadow", "canary", "decide",
        "report",
    ]  # fmt: skip
    assert {s["state"] for s in run["steps"]} == {"done"}
    steps = {s["name"]: s for s in run["steps"]}
    assert steps["collect"]["counts"]["captures"] == len(QUESTIONS)
    assert 1 <= steps["distill"]["counts"]["rows"] <= 4
    assert steps["evaluate"]["counts"]["prompts"] == 2
    assert run["candidate"] == "support@1"
    assert run["action"] in ("promote", "reject")
    # Lineage in the registry: the candidate names the data it learned from, and the
    # decision holds the evaluation that named this very version.
    store = open_store(load_settings(config))
    try:
        (version,) = list_versions(store, "support")
        (decision,) = decisions(store, "support")
        (loop_run,) = list_runs(store, "support")
    finally:
        store.close()
    distilled = loop_run.step("distill")
    assert distilled is not None
    assert version.lineage["dataset_sha256"] == distilled.outputs["sha256"]
    assert version.lineage["dataset_sha256"] == file_sha256(Path(distilled.outputs["dataset"]))
    assert decision["action"] == {"promote": "promote", "reject": "refuse"}[run["action"]]
    assert decision["evidence"]["vs_teacher"]["candidate"] == "support@1"
    assert decision["actor"] == "loop:support"
    report = loop_run.step("report")
    assert report is not None and Path(report.outputs["markdown"]).is_file()


STANDIN = """
[[models]]
name = "smollm2-135m-instruct"
engine = "llamacpp"

[[models]]
name = "standin"
engine = "openai"
params = {{ base_url = "{url}" }}

[[loops]]
name = "support"
model = "support"
tenant = "acme"
teacher = "standin"
judge = "smollm2-135m-instruct"
holdout = 0.3
eval_max_tokens = 48
[loops.budget]
examples = 4
train_steps = 2
eval_prompts = 2
"""


def _wait_for_distill(config: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 300
    store = open_store(load_settings(config))
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "the run ended before it could be killed"
            runs = list_runs(store, "support")
            step = runs[0].step("distill") if runs else None
            if step is not None and step.state == "done":
                return
            time.sleep(0.1)
    finally:
        store.close()
    raise AssertionError("the distill step never finished")


def test_a_run_killed_after_distilling_continues_without_asking_the_teacher_again(
    tmp_path: Path,
) -> None:
    with standin_teacher() as teacher:
        config = write_config(tmp_path / "openclone.toml", STANDIN.format(url=teacher.url))
        add_captures(config, len(QUESTIONS))
        proc = subprocess.Popen(
            [sys.executable, "-m", "openclone", "loop", "run", "support", "--config", str(config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ),
        )  # fmt: skip
        try:
            _wait_for_distill(config, proc)
        finally:
            proc.send_signal(signal.SIGKILL)  # a crash: nothing gets to record anything
            proc.wait()
        killed = _history(config)
        prompts = tmp_path / "openclone-home" / "loops" / "support" / "run-1" / "prompts.jsonl"
        distilled = [json.loads(line)["messages"] for line in prompts.read_text().splitlines()]
        asked_before = len(teacher.asked)

        result = runner.invoke(app, ["loop", "run", "support", "--config", str(config)])

        assert result.exit_code == 0, result.output
    assert killed["status"] == "running"  # as the dead process left it
    assert asked_before >= 1
    run = _history(config)
    assert run["number"] == 1 and run["status"] == "finished"
    assert {s["state"] for s in run["steps"]} == {"done"}
    # The distill step is the one recorded before the crash, not a second one.
    assert run["steps"][2] == killed["steps"][2]
    # After the crash the teacher answered only the evaluation, never a distill prompt again.
    taught = {m[-1]["content"] for m in distilled}
    assert not taught & set(teacher.asked[asked_before:])
    assert len(teacher.asked) - asked_before == 2  # the two eval prompts, once each
