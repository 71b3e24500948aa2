"""``openclone eval``, ``arena leaderboard`` and ``watch`` through the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import BUNDLED
from typer.testing import CliRunner

from evaluate.eval_helpers import bundled_toml
from openclone.cli import app
from openclone.evaluate import Battle
from openclone.evaluate.arena import append_battles

runner = CliRunner()
TWIN = "smollm2-twin"  # the bundled model again under another name: a second contestant


def _twin_eval(tmp_path: Path) -> tuple[list[str], Path, Path]:
    """``openclone eval`` of the bundled model's twin on 2 prompts: (args, config, out)."""
    cfg = bundled_toml(tmp_path / "openclone.toml", TWIN)
    out = tmp_path / "report"
    args = ["eval", "--candidate", TWIN, "--reference", BUNDLED, "--limit", "2"]
    args += ["--max-tokens", "16", "--judge-max-tokens", "16", "--judge-json"]
    args += ["--out", str(out), "--config", str(cfg), "--price", f"{TWIN}=1,2"]
    return args, cfg, out


@pytest.mark.slow
def test_eval_writes_reports_and_feeds_the_arena(tmp_path: Path) -> None:
    args, cfg, out = _twin_eval(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "win rate" in result.output and "95% bootstrap CI" in result.output
    assert str(out / "report.html") in result.output.replace("\n", "")
    data = json.loads((out / "report.json").read_text())
    assert (data["candidate"], data["reference"], data["judge"]) == (TWIN, BUNDLED, BUNDLED)
    assert (
        data["n"] == 2 and len(data["rows"]) == 2 and data["summary"]["candidate"]["cost_total"] > 0
    )
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    assert len((out / "battles.jsonl").read_text().splitlines()) == 2

    # The judge's outcomes went to the store, where the chat's arena keeps its votes.
    board = runner.invoke(app, ["arena", "leaderboard", "--config", str(cfg), "--source", "judge"])
    assert board.exit_code == 0, board.output
    assert TWIN in board.output and BUNDLED in board.output
    humans = runner.invoke(app, ["arena", "leaderboard", "--config", str(cfg), "--source", "human"])
    assert "no human battles yet" in humans.output


def test_eval_usage_errors_exit_2_before_loading_models(tmp_path: Path) -> None:
    bad = tmp_path / "set.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"prompt": \n')
    result = runner.invoke(
        app, ["eval", "--candidate", "x", "--reference", "y", "--prompts", str(bad)]
    )
    assert result.exit_code == 2 and "set.jsonl, line 2: not valid JSON" in result.output
    result = runner.invoke(
        app, ["eval", "--candidate", "x", "--reference", "y", "--price", "x=cheap"]
    )
    assert result.exit_code == 2 and "MODEL=INPUT,OUTPUT" in result.output


@pytest.mark.slow
def test_eval_of_an_unknown_model_lists_the_models(tmp_path: Path) -> None:
    cfg = bundled_toml(tmp_path / "openclone.toml")
    result = runner.invoke(
        app,
        ["eval", "--candidate", "gpt-9", "--reference", BUNDLED, "--limit", "1",
         "--max-tokens", "4", "--config", str(cfg), "--out", str(tmp_path / "o")],
    )  # fmt: skip
    assert result.exit_code == 1
    assert f"unknown model 'gpt-9'; available models: {BUNDLED}" in result.output


def test_leaderboard_from_battle_files(tmp_path: Path) -> None:
    path = tmp_path / "battles.jsonl"
    append_battles(
        path, [Battle("alpha", "beta", "a", "human")] * 6 + [Battle("beta", "alpha", "a")]
    )
    result = runner.invoke(app, ["arena", "leaderboard", "--battles", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    alpha = next(i for i, line in enumerate(lines) if "alpha" in line)
    beta = next(i for i, line in enumerate(lines) if "beta" in line)
    assert alpha < beta and "arena (all)" in result.output
    assert runner.invoke(app, ["arena", "leaderboard", "--source", "x"]).exit_code == 2
    empty = runner.invoke(app, ["arena", "leaderboard"])
    assert empty.exit_code == 0 and "no battles yet" in empty.output
    path.write_text('{"model_a": "a"}\n')
    broken = runner.invoke(app, ["arena", "leaderboard", "--battles", str(path)])
    assert broken.exit_code == 2 and "line 1: missing model_b, winner" in broken.output


@pytest.mark.slow
def test_watch_writes_a_baseline_then_reports_stable_then_drift(tmp_path: Path) -> None:
    cfg = bundled_toml(tmp_path / "openclone.toml")
    baseline = tmp_path / "base.json"
    args = ["watch", BUNDLED, "--limit", "2", "--max-tokens", "12", "--baseline", str(baseline)]
    args += ["--config", str(cfg)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0 and "baseline written" in first.output, first.output
    second = runner.invoke(app, args)
    assert second.exit_code == 0 and "stable" in second.output, second.output
    # Rewrite the recorded answers, as if the model had answered differently back then.
    data = json.loads(baseline.read_text())
    for answer in data["answers"]:
        answer["answer"] = "Something else entirely, nothing like today's answer."
    baseline.write_text(json.dumps(data))
    third = runner.invoke(app, args)
    assert third.exit_code == 3 and "DRIFT" in third.output and "100% of 2" in third.output


@pytest.mark.slow
def test_a_detached_eval_runs_as_a_job_and_feeds_the_arena(tmp_path: Path) -> None:
    from openclone.jobs import job_logs, list_jobs, wait_job

    args, cfg, out = _twin_eval(tmp_path)
    result = runner.invoke(app, [*args, "--detach"])
    assert result.exit_code == 0, result.output
    (job,) = [j for j in list_jobs() if j.kind == "eval"]
    status = wait_job(job.id, timeout=300)
    assert status.state == "succeeded", job_logs(job.id)
    assert (status.step, status.total) == (2, 2)
    assert status.result["n"] == 2 and status.result["battles_recorded"] == 2
    data = json.loads((out / "report.json").read_text())
    assert data["n"] == 2 and data["summary"]["candidate"]["cost_total"] > 0
    board = runner.invoke(app, ["arena", "leaderboard", "--config", str(cfg), "--source", "judge"])
    assert TWIN in board.output and BUNDLED in board.output
