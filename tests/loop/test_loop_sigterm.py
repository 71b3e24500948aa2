"""`openclone loop start` stopped by SIGTERM mid-step, as the server stops its loops child:
the run is recorded paused, and the next start continues it where it stopped, its
finished steps as they were and the answers already bought not asked again. Killed mid-step
(SIGKILL: a crash records nothing), the next start takes the dead process's run over and
continues it the same way.

The child is a real process running the real `loop start` (its signal handling, the
scheduler, the runner, the store); its teacher is a stand-in server (NOT a model) that
answers two prompts and then holds the next ones, so the run is surely mid-distill when it
is stopped; train and evaluate are the quick stand-ins of loop/quick_steps.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from typer.testing import CliRunner

from loop.helpers import StandIn, add_captures, standin_teacher, write_config
from openclone.cli import app
from openclone.config import load_settings
from openclone.loop.state import RunInfo, list_runs
from openclone.store import open_store

cli = CliRunner()
T = TypeVar("T")
TESTS = Path(__file__).resolve().parents[1]

CONFIG = """
[[models]]
name = "standin"
engine = "openai"
params = {{ base_url = "{url}" }}

[[loops]]
name = "support"
model = "support"
tenant = "acme"
teacher = "standin"
judge = "standin"
student_base = "standin"
min_captures = 3
holdout = 0
concurrency = 2
[loops.budget]
examples = 6
eval_prompts = 2
"""


def _start(config: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """`openclone loop start` in a process of its own (quick train and evaluate)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "loop.quick_steps", "loop", "start", "--poll", "1",
               "--config", str(config), *args]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)


def _start_once(config: Path, log: Path) -> None:
    """`openclone loop start --once`, to its end: it runs what is due and exits 0."""
    proc = _start(config, log, "--once")
    try:
        assert proc.wait(timeout=120) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _until(what: Callable[[], T | None], proc: subprocess.Popen[bytes], log: Path) -> T:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the loop process ended early:\n{log.read_text()}"
        found = what()
        if found is not None:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting; the loop process said:\n{log.read_text()}")


def _run(config: Path) -> RunInfo | None:
    store = open_store(load_settings(config))
    try:
        runs = list_runs(store, "support")
    finally:
        store.close()
    return runs[0] if runs else None


def _mid_distill(config: Path, teacher: StandIn, distilled: Path) -> RunInfo | None:
    """The run, once two answers are saved and the teacher holds the next prompts."""
    run = _run(config)
    step = run.step("distill") if run is not None else None
    if step is None or step.state != "running" or len(teacher.asked) < 3:
        return None
    return run if len(_questions(distilled)) == 2 else None


def _questions(path: Path) -> list[str]:
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [next(m["content"] for m in row["messages"] if m["role"] == "user") for row in rows]


def _history(config: Path) -> dict[str, Any]:
    result = cli.invoke(app, ["loop", "history", "support", "--json", "--config", str(config)])
    assert result.exit_code == 0, result.output
    runs: list[dict[str, Any]] = json.loads(result.stdout)["runs"]
    return runs[0]


def test_sigterm_pauses_a_loop_mid_step_and_the_next_start_continues_it(
    tmp_path: Path,
) -> None:
    log = tmp_path / "loop-start.log"
    with standin_teacher(hold_after=2) as teacher:
        config = write_config(tmp_path / "openclone.toml", CONFIG.format(url=teacher.url))
        add_captures(config, 8)
        distilled = tmp_path / "openclone-home" / "loops" / "support" / "run-1" / "distilled.jsonl"

        proc = _start(config, log)
        try:
            before = _until(partial(_mid_distill, config, teacher, distilled), proc, log)
            saved = _questions(distilled)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)  # at once, not after the held answers
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert code == 0, log.read_text()
        assert "stopped (SIGTERM)" in log.read_text()
        paused = _history(config)
        assert (paused["number"], paused["status"]) == (1, "paused")
        assert [(s["name"], s["state"]) for s in paused["steps"]] == [
            ("collect", "done"), ("curate", "done"), ("distill", "paused"),
        ]  # fmt: skip
        asked_before = len(teacher.asked)
        teacher.release.set()

        _start_once(config, log)

    run = _history(config)
    assert (run["number"], run["status"]) == (1, "finished"), log.read_text()
    assert {s["state"] for s in run["steps"]} == {"done"}
    after = _run(config)
    assert after is not None
    # The steps finished before the stop are the ones recorded then, not run again.
    for name in ("collect", "curate"):
        assert after.step(name) == before.step(name)
    # The answers saved before the stop stay, and the teacher was not asked them again.
    final = _questions(distilled)
    assert len(saved) == 2 and set(saved) <= set(final) and len(final) == 6
    assert not set(saved) & set(teacher.asked[asked_before:])
    distill = after.step("distill")
    assert distill is not None and distill.counts["rows"] == 6


def test_a_loop_killed_mid_distill_continues_without_asking_the_saved_answers_again(
    tmp_path: Path,
) -> None:
    log = tmp_path / "loop-start.log"
    with standin_teacher(hold_after=2) as teacher:
        config = write_config(tmp_path / "openclone.toml", CONFIG.format(url=teacher.url))
        add_captures(config, 8)
        distilled = tmp_path / "openclone-home" / "loops" / "support" / "run-1" / "distilled.jsonl"
        proc = _start(config, log)
        try:
            _until(partial(_mid_distill, config, teacher, distilled), proc, log)
            saved = _questions(distilled)
        finally:
            proc.kill()  # a crash: nothing gets to record anything
            proc.wait()
        crashed = _history(config)
        assert (crashed["number"], crashed["status"]) == (1, "running")
        asked_before = len(teacher.asked)
        teacher.release.set()

        _start_once(config, log)

    run = _history(config)
    # The same run, taken over from the dead process (same host: its pid is gone).
    assert (run["number"], run["status"]) == (1, "finished"), log.read_text()
    final = _questions(distilled)
    assert len(saved) == 2 and set(saved) <= set(final) and len(final) == 6
    assert not set(saved) & set(teacher.asked[asked_before:])
