"""`openclone loop` without training: too little data, the scheduler, status, pause, cancel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from loop.helpers import add_captures, write_config
from openclone.cli import app

runner = CliRunner()


def _cli(*args: str) -> Any:
    return runner.invoke(app, list(args))


def _history(config: Path) -> list[dict[str, Any]]:
    result = _cli("loop", "history", "support", "--json", "--config", str(config))
    assert result.exit_code == 0, result.output
    runs: list[dict[str, Any]] = json.loads(result.stdout)["runs"]
    return runs


def test_too_few_captures_end_the_run_with_a_not_enough_data_decision(tmp_path: Path) -> None:
    config = write_config(tmp_path / "openclone.toml")
    add_captures(config, 3)

    result = _cli("loop", "run", "support", "--config", str(config))

    assert result.exit_code == 0, result.output  # a decision, not an error
    (run,) = _history(config)
    assert run["status"] == "finished"
    assert run["action"] == "skip"
    assert run["decision"].startswith("skipped: not enough data (3 new consented captures")
    states = {s["name"]: s["state"] for s in run["steps"]}
    assert states == {
        "collect": "done", "curate": "skipped", "distill": "skipped", "review": "skipped",
        "train": "skipped",
        "evaluate": "skipped", "shadow": "skipped", "canary": "skipped", "decide": "skipped",
        "report": "done",
    }  # fmt: skip
    assert run["steps"][0]["counts"]["captures"] == 3
    assert run["cost_usd"] == 0


def test_the_scheduler_runs_a_due_loop_and_status_shows_it(tmp_path: Path) -> None:
    config = write_config(tmp_path / "openclone.toml")
    add_captures(config, 2)

    first = _cli("loop", "start", "--once", "--config", str(config))
    again = _cli("loop", "start", "--once", "--config", str(config))  # not due for a day

    assert first.exit_code == 0 and again.exit_code == 0, first.output + again.output
    assert "1 run(s) started" in first.stderr and "0 run(s) started" in again.stderr
    status = _cli("loop", "status", "--json", "--config", str(config))
    assert status.exit_code == 0, status.output
    (loop,) = json.loads(status.stdout)["loops"]
    assert set(loop) == {
        "name", "model", "tenant", "teacher", "every", "every_captures", "new_captures",
        "paused", "champion", "next_due", "last_run", "deprecation", "costs",
    }  # fmt: skip
    assert loop["deprecation"] is None  # no [deprecations] entry for its teacher
    assert (loop["name"], loop["paused"], loop["champion"]) == ("support", False, None)
    assert loop["next_due"] is not None
    last = loop["last_run"]
    assert (last["number"], last["status"], last["action"]) == (1, "finished", "skip")
    assert {
        "name",
        "state",
        "counts",
        "started",
        "finished",
        "seconds",
        "cost_usd",
        "error",
    } == set(last["steps"][0])


def test_a_paused_loop_does_not_run_until_resumed(tmp_path: Path) -> None:
    config = write_config(tmp_path / "openclone.toml")
    add_captures(config, 2)

    assert _cli("loop", "pause", "support", "--config", str(config)).exit_code == 0
    refused = _cli("loop", "run", "support", "--config", str(config))
    skipped = _cli("loop", "start", "--once", "--config", str(config))
    status = json.loads(_cli("loop", "status", "--json", "--config", str(config)).stdout)

    assert refused.exit_code == 1
    assert "is paused" in refused.stderr
    assert "0 run(s) started" in skipped.stderr
    assert status["loops"][0]["paused"] is True
    assert _history(config) == []
    assert _cli("loop", "resume", "support", "--config", str(config)).exit_code == 0
    assert _cli("loop", "run", "support", "--config", str(config)).exit_code == 0
    assert len(_history(config)) == 1


def test_an_unknown_loop_is_a_usage_error(tmp_path: Path) -> None:
    config = write_config(tmp_path / "openclone.toml")
    result = _cli("loop", "run", "sales", "--config", str(config))
    assert result.exit_code == 2
    assert "no loop named 'sales'" in result.stderr
