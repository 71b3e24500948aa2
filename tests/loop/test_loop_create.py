"""`openclone loop create` appends a [[loops]] block that the loader reads back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from loop.helpers import write_config
from openclone.cli import app
from openclone.config import load_settings
from openclone.loop import get_loop

runner = CliRunner()

ARGS = ["--model", "support", "--tenant", "acme", "--teacher", "smollm2-135m-instruct",
        "--student-base", "smollm2-135m-instruct", "--judge", "smollm2-135m-instruct"]  # fmt: skip


def _create(config: Path, name: str, *extra: str) -> Any:
    return runner.invoke(app, ["loop", "create", name, *ARGS, *extra, "--config", str(config)])


def test_create_writes_a_loop_the_loader_reads_back(tmp_path: Path) -> None:
    config = write_config(tmp_path / "openclone.toml", '[prices]\n"x" = { input = 1 }\n')

    result = _create(config, "support", "--every", "12h", "--every-captures", "50",
                     "--examples", "8", "--teacher-usd", "2.5", "--gpu-hours", "0.5")  # fmt: skip

    assert result.exit_code == 0, result.output
    loop = get_loop(load_settings(config), "support")
    assert (loop.model, loop.tenant, loop.every, loop.every_captures) == (
        "support", "acme", "12h", 50
    )  # fmt: skip
    assert (loop.budget.examples, loop.budget.teacher_usd, loop.budget.gpu_hours) == (8, 2.5, 0.5)
    assert loop.budget.train_steps == 200  # unset options keep their defaults
    assert load_settings(config).prices["x"].input == 1  # what was there stays


def test_create_refuses_a_duplicate_and_a_bad_value_leaving_the_file(tmp_path: Path) -> None:
    config = write_config(tmp_path / "openclone.toml", "")
    assert _create(config, "support").exit_code == 0
    before = config.read_text()

    dupe = _create(config, "support")
    bad = _create(config, "sales", "--every", "often")

    assert dupe.exit_code == 2 and "already has a loop named 'support'" in dupe.stderr
    assert bad.exit_code == 2 and 'expected a period such as "1d"' in bad.stderr
    assert config.read_text() == before
