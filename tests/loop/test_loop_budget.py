"""A run's teacher dollars stop distilling at the budget; the cost crossover of a model
compares serving it with the API price of the same traffic."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from store.helpers import exchange, write
from typer.testing import CliRunner

from loop.helpers import MINIMAL, QUESTIONS, standin_teacher, write_config
from openclone.cli import app
from openclone.config import load_settings
from openclone.loop import build, get_loop
from openclone.loop.context import StepContext, StepResult
from openclone.loop.state import claim_run
from openclone.store import open_store

# Each stand-in answer is 10 prompt and 14 completion tokens: $0.024 at these prices.
PRICED = """
[prices]
"standin" = {{ input = 1000, output = 1000 }}

[[models]]
name = "standin"
engine = "openai"
params = {{ base_url = "{url}" }}

[[loops]]
name = "support"
model = "support"
tenant = "acme"
teacher = "standin"
concurrency = 1
[loops.budget]
examples = 8
teacher_usd = 0.05
"""


def _distill(tmp_path: Path, config_text: str) -> tuple[StepResult, list[str]]:
    """The loop's distill step over every question; its result and what the teacher was asked."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(
            json.dumps({"messages": [{"role": "user", "content": q}]}) + "\n" for q in QUESTIONS
        )
    )
    with standin_teacher() as teacher:
        config = write_config(tmp_path / "openclone.toml", config_text.format(url=teacher.url))
        settings = load_settings(config)
        loop = get_loop(settings, "support")
        store = open_store(settings)
        try:
            run = claim_run(store, loop)
            (tmp_path / "run").mkdir()
            ctx = StepContext(loop, settings, store, run, tmp_path / "run",
                              outputs={"curate": {"prompts": str(prompts)}})  # fmt: skip
            return build.distill(ctx), teacher.asked
        finally:
            store.close()


def test_distilling_stops_at_the_teacher_budget(tmp_path: Path) -> None:
    result, asked = _distill(tmp_path, PRICED)

    assert (result.counts["rows"], len(asked)) == (2, 2)  # a third would cross $0.05
    assert result.cost_usd == pytest.approx(0.048)
    assert result.outputs["budget_stop"] == (
        "teacher budget: stopped at 2 of 8 answers, $0.0480 of $0.0500"
    )


def test_a_first_batch_cannot_spend_the_budget_several_times_over(tmp_path: Path) -> None:
    # Four answers at once would cost $0.096 against a $0.03 limit; nothing says what an
    # answer costs before the first one is paid for, so it is asked alone.
    text = PRICED.replace("concurrency = 1", "concurrency = 4")
    result, asked = _distill(tmp_path, text.replace("teacher_usd = 0.05", "teacher_usd = 0.03"))

    assert (result.counts["rows"], len(asked)) == (1, 1)
    assert result.outputs["budget_stop"] == (
        "teacher budget: stopped at 1 of 8 answers, $0.0240 of $0.0300"
    )


def test_status_shows_the_cost_crossover(tmp_path: Path) -> None:
    text = MINIMAL.replace('every = "1d"', 'every = "1d"\nserving_cost_per_hour = 1.0')
    text = '[prices]\n"smollm2-135m-instruct" = { input = 2.5, output = 10 }\n' + text
    config = write_config(tmp_path / "openclone.toml", text)
    store = open_store(load_settings(config))
    day_ago = time.time() - 86400
    try:  # 10 requests served as "support" over a day: 5 + 2 tokens each, recorded as the
        # gateway records them, by the version that answered
        write(store, *(exchange(q, model="support@1", created=day_ago) for q in QUESTIONS[:10]))
    finally:
        store.close()

    result = CliRunner().invoke(app, ["loop", "status", "--json", "--config", str(config)])

    assert result.exit_code == 0, result.output
    costs: dict[str, Any] = json.loads(result.stdout)["loops"][0]["costs"]
    assert (costs["prompt_tokens"], costs["completion_tokens"]) == (50, 20)
    assert costs["api_model"] == "smollm2-135m-instruct"
    assert costs["api_usd_per_1m"] == pytest.approx((50 * 2.5 + 20 * 10) / 70, rel=1e-3)
    assert costs["serving_usd_per_1m"] == pytest.approx(24 / 70 * 1e6, rel=1e-3)  # $24 a day
    assert costs["break_even_tokens_per_day"] == pytest.approx(24 / (325 / 70) * 1e6, rel=1e-3)
    assert costs["cheaper"] == "api"  # 70 tokens a day are far below it


def test_the_hours_budget_ends_training_at_the_step_that_crosses_it(tmp_path: Path) -> None:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    args = TrainingArguments(output_dir="unused", report_to=[])
    within = build._HoursBudget(1.0, tmp_path / "a.json")
    over = build._HoursBudget(1e-9, tmp_path / "b.json")
    controls = [TrainerControl(), TrainerControl()]
    for budget, control in zip((within, over), controls, strict=True):
        budget.callback.on_step_end(args, TrainerState(), control)

    assert [c.should_training_stop for c in controls] == [False, True]
    assert (within.hit, over.hit) == (False, True)


def test_a_resumed_training_attempt_gets_the_hours_left_not_afresh(tmp_path: Path) -> None:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    args = TrainingArguments(output_dir="unused", report_to=[])
    ledger = tmp_path / "train-hours.json"
    first = build._HoursBudget(1.0, ledger)
    first.callback.on_step_end(args, TrainerState(), TrainerControl())
    assert not first.hit
    # The attempt was stopped having used all but a moment of its hour.
    ledger.write_text('{"seconds": 3599.9999}')
    resumed, control = build._HoursBudget(1.0, ledger), TrainerControl()
    time.sleep(0.001)
    resumed.callback.on_step_end(args, TrainerState(), control)
    assert resumed.hit and control.should_training_stop
