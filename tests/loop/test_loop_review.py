"""Issue 17 item 3, the loop's gate: with ``review = true`` a run waits after distilling
until no example is pending, then trains on the approved ones, edits applied."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from loop.helpers import MINIMAL, QUESTIONS, add_captures, standin_teacher, write_config
from openclone.cli import app
from openclone.config import load_settings
from openclone.loop.config import get_loop
from openclone.loop.context import StepContext
from openclone.loop.review import review
from openclone.loop.state import claim_run
from openclone.store import open_store
from openclone.store.review import edit_answer, list_datasets, set_state

runner = CliRunner()

STANDIN = """
[[models]]
name = "standin"
engine = "openai"
params = {{ base_url = "{url}" }}

[[loops]]
name = "support"
model = "support"
tenant = "acme"
teacher = "standin"
review = true
[loops.budget]
examples = 4
"""


def _run(config: Path) -> dict[str, Any]:
    result = runner.invoke(app, ["loop", "run", "support", "--config", str(config)])
    assert result.exit_code == 0, result.output
    history = runner.invoke(app, ["loop", "history", "support", "--json", "--config", str(config)])
    assert history.exit_code == 0, history.output
    runs: list[dict[str, Any]] = json.loads(history.stdout)["runs"]
    return runs[0]


def test_a_run_waits_for_review_and_continues_without_asking_the_teacher_again(
    tmp_path: Path,
) -> None:
    with standin_teacher() as teacher:
        config = write_config(tmp_path / "openclone.toml", STANDIN.format(url=teacher.url))
        add_captures(config, len(QUESTIONS))
        first = _run(config)
        asked = len(teacher.asked)
        again = _run(config)  # nobody reviewed yet: it waits again
        store = open_store(load_settings(config))
        try:
            (dataset,) = list_datasets(store)
            set_state(store, dataset.id, "rejected", actor="ops")  # every example
        finally:
            store.close()
        done = _run(config)
        assert len(teacher.asked) == asked  # the distill step was never paid for twice
    steps = {s["name"]: s for s in first["steps"]}
    assert first["status"] == "waiting" and list(steps)[-2:] == ["distill", "review"]
    assert steps["review"]["state"] == "waiting"
    assert steps["review"]["counts"]["pending"] == steps["distill"]["counts"]["rows"] >= 1
    assert (dataset.tenant, dataset.rows) == ("acme", steps["distill"]["counts"]["rows"])
    assert (again["number"], again["status"]) == (1, "waiting")
    assert done["number"] == 1 and done["status"] == "finished"
    assert done["decision"] == "skipped: review approved no example"
    states = {s["name"]: s["state"] for s in done["steps"]}
    assert states["review"] == "done" and states["train"] == "skipped"


def test_the_review_step_hands_training_the_approved_rows_with_edits(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "openclone.toml", MINIMAL.replace('every = "1d"', 'every = "1d"\nreview = true')
    )
    add_captures(config, 1)  # the tenant
    distilled = tmp_path / "distilled.jsonl"
    distilled.write_text("".join(
        json.dumps({"messages": [{"role": "user", "content": q},
                                 {"role": "assistant", "content": "Let me check."}]}) + "\n"
        for q in QUESTIONS[:3]
    ))  # fmt: skip
    settings = load_settings(config)
    loop = get_loop(settings, "support")
    store = open_store(settings)
    try:
        ctx = StepContext(loop, settings, store, claim_run(store, loop), tmp_path,
                          outputs={"distill": {"dataset": str(distilled)}})  # fmt: skip
        waiting = review(ctx)
        assert (
            waiting.waiting == "waiting for review: 3 pending" and "dataset" not in waiting.outputs
        )
        dataset = waiting.outputs["review_dataset"]
        edit_answer(store, dataset, 1, "Open Settings, then Billing.", actor="ops")
        set_state(store, dataset, "approved", actor="ops", rows=[1, 2])
        assert review(ctx).waiting is not None  # row 0 is still pending
        set_state(store, dataset, "rejected", actor="ops", rows=[0])
        passed = review(ctx)
    finally:
        store.close()
    assert passed.waiting is None and passed.decision is None
    assert passed.counts["approved"] == 2 and passed.counts["edited"] == 1
    rows = [json.loads(line) for line in Path(passed.outputs["dataset"]).read_text().splitlines()]
    assert [r["messages"][0]["content"] for r in rows] == QUESTIONS[1:3]
    assert rows[0]["messages"][-1]["content"] == "Open Settings, then Billing."
