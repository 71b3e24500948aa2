"""End to end with the real bundled model as the teacher, through the CLI and the router.

SmolLM2-135M writes poor tasks, so the test holds the run to what any teacher guarantees:
the run ends (a round budget), every row is valid chat JSONL, the card adds up, and a
second run on the same output continues it without repeating a task.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openclone.cli import app

runner = CliRunner()


@pytest.mark.slow
def test_bundled_teacher_end_to_end_and_resume(tmp_path: Path) -> None:
    config = tmp_path / "openclone.toml"
    config.write_text(
        '[[models]]\nname = "smollm2-135m-instruct"\n'
        # One thread: llama.cpp's thread pool slows down ~15x on a busy, shared 2-core box.
        "params = { n_ctx = 2048, n_parallel = 4, n_threads = 1 }\n"
    )
    out = tmp_path / "tiny.jsonl"
    common = ["distill", "--out", str(out), "--config", str(config), "--max-tokens", "200"]
    common += ["--answer-max-tokens", "64", "--keep-truncated", "--max-rounds", "2"]
    common += ["--tasks-per-request", "4", "--concurrency", "4", "--random-seed", "5"]

    first = runner.invoke(app, [*common, "--count", "2"])
    assert first.exit_code in (0, 3), first.output  # 3: the round budget ran out first
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) <= 2
    for row in rows:
        user, answer = row["messages"]
        assert user["role"] == "user" and answer["role"] == "assistant"
        assert user["content"].startswith(row["metadata"]["instruction"])
        assert answer["content"].strip()
    card = json.loads(out.with_suffix(".card.json").read_text())
    counts = card["counts"]
    assert counts["kept"] == len(rows) and card["teacher"] == "smollm2-135m-instruct"
    assert counts["tasks_written"] == counts["kept"] + counts["dropped_total"] + counts["unused"]
    assert card["requests"]["task_writing"] <= 2 and card["tokens"]["completion"] > 0
    assert card["status"] in ("complete", "budget exhausted")

    second = runner.invoke(app, [*common, "--count", str(len(rows) + 1)])
    assert second.exit_code in (0, 3), second.output
    after = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert after[: len(rows)] == rows and len(after) <= len(rows) + 1
    instructions = [r["metadata"]["instruction"] for r in after]
    assert len(set(instructions)) == len(instructions)
    assert json.loads(out.with_suffix(".card.json").read_text())["sessions"] == 2
    print(out.with_suffix(".card.md").read_text())  # shown with -s: what the model made
