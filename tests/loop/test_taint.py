"""Erasure-aware retraining: a loop's files are reached by erasure, the promoted version
trained on erased data is tainted, the loop is due at once, retrains without the erased
rows, promotes through the gate and archives what was tainted.

The teacher is a stand-in server (NOT a model) and the train and evaluate steps are
replaced by ones that register a version from the distilled set and write passing
reports, so the test takes seconds; every other step, the gate included, is the real one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from store.helpers import exchange, write
from typer.testing import CliRunner

from loop.helpers import QUESTIONS, StandIn, add_captures, standin_teacher, write_config
from loop.quick_steps import use_quick_steps
from openclone.cli import app
from openclone.config import load_settings
from openclone.errors import ModelNotFound
from openclone.loop import runner as loop_runner
from openclone.loop import schedule
from openclone.loop.config import get_loop
from openclone.loop.runner import LoopRunner
from openclone.loop.state import list_runs
from openclone.registry.versions import get_version, list_versions
from openclone.store import Store, open_store
from openclone.store.accounts import set_tenant_policy
from openclone.store.privacy import apply_retention
from openclone.store.taint import list_taints

cli = CliRunner()
EVE_SECRET = "EVE-canary-4410 when does my parole hearing start"

CONFIG = """
[prices]
"standin" = {{ input = 1000, output = 1000 }}  # $0.024 an answer (10 + 14 tokens)

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
[loops.budget]
examples = 10
eval_prompts = 2
"""


@pytest.fixture
def teacher() -> Iterator[StandIn]:
    with standin_teacher() as standin:
        yield standin


@pytest.fixture
def loop_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, teacher: StandIn) -> Path:
    monkeypatch.setattr(loop_runner, "STEPS", use_quick_steps())
    config = write_config(tmp_path / "openclone.toml", CONFIG.format(url=teacher.url))
    add_captures(config, 5)
    return config


def _run(config: Path, say: Callable[[str], None] | None = None) -> Any:
    settings = load_settings(config)
    return LoopRunner(get_loop(settings, "support"), settings, say).run()


def _holding(folder: Path, text: str) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and text in p.read_text())


def test_an_erasure_taints_the_loop_which_retrains_without_the_erased_rows(
    loop_config: Path,
) -> None:
    settings = load_settings(loop_config)
    store = open_store(settings)
    try:
        write(store, exchange(EVE_SECRET, tenant="acme", user="eve"))
        first = _run(loop_config)
        assert first.action == "promote" and first.candidate == "support@1"
        run_1 = settings.home / "loops" / "support" / "run-1"
        assert _holding(run_1, EVE_SECRET) == [
            "captures.jsonl", "distilled.jsonl", "prompts.jsonl",
        ]  # fmt: skip
        config = get_loop(settings, "support")
        assert schedule.due(store, [config], time.time(), settings) == []  # ran a moment ago

        erased = cli.invoke(app, ["erase", "--tenant", "acme", "--user", "eve", "--yes",
                                  "--config", str(loop_config)])  # fmt: skip
        assert erased.exit_code == 0, erased.output

        # Every run file that held eve's text was rewritten without it.
        assert _holding(run_1, EVE_SECRET) == []
        tainted = {"support@1": "tainted", "support-r1@1": "tainted"}
        assert _states(store) == tainted | {d: "tainted" for d in _datasets(store)}
        audit = cli.invoke(app, ["audit", "erasures", "--config", str(loop_config)],
                           terminal_width=400)  # fmt: skip
        assert audit.exit_code == 0, audit.output
        assert "loop file" in audit.output and f"{run_1 / 'distilled.jsonl'}" in audit.output
        assert "model support@1: tainted" in audit.output

        # Due at once, though its cadence ("1d") is not.
        assert schedule.due(store, [config], time.time(), settings) == [config]

        second = _run(loop_config)

        runs = list_runs(store, "support")
        collect = runs[0].step("collect")
        assert collect is not None
        # The tainted version's window again (run 1 began at the start), less eve.
        assert collect.outputs["since"] is None and collect.outputs["retrains"] == "support@1"
        assert collect.counts["captures"] == 5
        run_2 = settings.home / "loops" / "support" / "run-2"
        assert _holding(run_2, EVE_SECRET) == []
        assert second.action == "promote" and second.candidate == "support@2"
        versions = {v.pinned: v.status for v in list_versions(store, "support")}
        assert versions == {"support@1": "archived", "support@2": "champion"}
        taints = {t.target: t for t in list_taints(store)}
        assert taints["support@1"].state == "archived"
        assert taints["support@1"].replaced_by == "support@2"
        assert taints["support@1"].run_id == runs[0].id
        # The run's own name served the same tainted weights: it answers no more.
        assert taints["support-r1@1"].state == "archived"
        assert [v.status for v in list_versions(store, "support-r1")] == ["archived"]
        with pytest.raises(ModelNotFound):
            get_version(store, "support-r1")
        assert {t.state for t in taints.values() if t.kind == "dataset"} == {"retrained"}
        assert schedule.due(store, [config], time.time(), settings) == []
        audit = cli.invoke(app, ["audit", "erasures", "--config", str(loop_config)],
                           terminal_width=400)  # fmt: skip
        assert f"model support@1: archived by loop run {runs[0].id}" in audit.output
    finally:
        store.close()


def test_retrain_on_erasure_next_waits_for_the_loops_turn(loop_config: Path) -> None:
    text = loop_config.read_text().replace(
        "holdout = 0", 'holdout = 0\nretrain_on_erasure = "next"'
    )
    loop_config.write_text(text)
    settings = load_settings(loop_config)
    store = open_store(settings)
    try:
        write(store, exchange(EVE_SECRET, tenant="acme", user="eve"))
        assert _run(loop_config).action == "promote"
        erased = cli.invoke(app, ["erase", "--tenant", "acme", "--user", "eve", "--yes",
                                  "--config", str(loop_config)])  # fmt: skip
        assert erased.exit_code == 0, erased.output
        assert _states(store)["support@1"] == "tainted"
        config = get_loop(settings, "support")
        assert schedule.due(store, [config], time.time(), settings) == []
    finally:
        store.close()


def _states(store: Store) -> dict[str, str]:
    return {t.target: t.state for t in list_taints(store)}


def _datasets(store: Store) -> list[str]:
    return [t.target for t in list_taints(store) if t.kind == "dataset"]


def test_retention_expiring_a_loops_captures_taints_nothing(loop_config: Path) -> None:
    """Retention removes what has passed its keep-by date; what was trained on it while it
    was kept stands, or each hourly pass would make the loop retrain and pay again."""
    settings = load_settings(loop_config)
    store = open_store(settings)
    try:
        assert _run(loop_config).action == "promote"
        set_tenant_policy(store, "acme", actor="admin", retention_days=1)
        [result] = apply_retention(store, at=time.time() + 3 * 86400)
        assert result.counts["captures"] == 5  # the run's captures expired and are gone
        assert _states(store) == {}
        config = get_loop(settings, "support")
        assert schedule.due(store, [config], time.time(), settings) == []
    finally:
        store.close()


NEW_QUESTION = "Can I pause my plan for a month?"


def _erase_eve(config: Path) -> None:
    erased = cli.invoke(app, ["erase", "--tenant", "acme", "--user", "eve", "--yes",
                              "--config", str(config)])  # fmt: skip
    assert erased.exit_code == 0, erased.output


def _distill_step(store: Store) -> Any:
    step = list_runs(store, "support")[0].step("distill")
    assert step is not None and step.state == "done"
    return step


def _questions(path: Path) -> list[str]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [next(m["content"] for m in row["messages"] if m["role"] == "user") for row in rows]


def test_a_retrain_asks_the_teacher_only_for_what_it_had_not_answered(
    loop_config: Path, teacher: StandIn
) -> None:
    settings = load_settings(loop_config)
    store = open_store(settings)
    try:
        write(store, exchange(EVE_SECRET, tenant="acme", user="eve"))
        assert _run(loop_config).action == "promote"
        assert sorted(teacher.asked) == sorted([*QUESTIONS[:5], EVE_SECRET])
        first = _distill_step(store)
        assert (first.counts["reused"], first.counts["asked"]) == (0, 6)
        write(store, exchange(NEW_QUESTION, tenant="acme"))  # arrives before the retrain
        _erase_eve(loop_config)
        before = len(teacher.asked)

        said: list[str] = []
        second = _run(loop_config, said.append)

        assert second.action == "promote" and second.candidate == "support@2"
        # The teacher was asked for the one prompt it had never answered, nothing else.
        assert teacher.asked[before:] == [NEW_QUESTION]
        step = _distill_step(store)
        assert step.counts["rows"] == 6
        assert (step.counts["reused"], step.counts["asked"]) == (5, 1)
        assert (step.outputs["reused"], step.outputs["asked"]) == (5, 1)
        assert step.cost_usd == pytest.approx(0.024) == first.cost_usd / 6  # only the asked
        assert any("5 reused from earlier runs, 1 asked of the teacher" in m for m in said)
        # What the candidate learned from: the old answers and the new one, never eve's.
        trained = Path(get_version(store, "support", 2).lineage["dataset"])
        assert trained == Path(step.outputs["dataset"])
        assert sorted(_questions(trained)) == sorted([*QUESTIONS[:5], NEW_QUESTION])
        assert _holding(trained.parent, EVE_SECRET) == []
        # The reused rows keep their capture ids: erasing who asked reaches the new copy.
        erased = cli.invoke(app, ["erase", "--tenant", "acme", "--user", "ana", "--yes",
                                  "--config", str(loop_config)])  # fmt: skip
        assert erased.exit_code == 0, erased.output
        assert _questions(trained) == []
    finally:
        store.close()


def test_a_retrain_with_another_teacher_setting_asks_again(
    loop_config: Path, teacher: StandIn
) -> None:
    settings = load_settings(loop_config)
    store = open_store(settings)
    try:
        write(store, exchange(EVE_SECRET, tenant="acme", user="eve"))
        assert _run(loop_config).action == "promote"
        _erase_eve(loop_config)
        # The answers were sampled for another length: none of them is this teacher's now.
        text = loop_config.read_text().replace("holdout = 0", "holdout = 0\nanswer_max_tokens = 99")
        loop_config.write_text(text)
        before = len(teacher.asked)

        assert _run(loop_config).action == "promote"

        assert sorted(teacher.asked[before:]) == sorted(QUESTIONS[:5])
        step = _distill_step(store)
        assert (step.counts["reused"], step.counts["asked"]) == (0, 5)
    finally:
        store.close()


def test_a_retrain_stopped_mid_distill_continues_without_asking_again(
    loop_config: Path, teacher: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    from openclone.distill import recipe

    settings = load_settings(loop_config)
    store = open_store(settings)
    try:
        write(store, exchange(EVE_SECRET, tenant="acme", user="eve"))
        assert _run(loop_config).action == "promote"
        write(store, exchange(NEW_QUESTION, tenant="acme"))
        _erase_eve(loop_config)
        before = len(teacher.asked)
        real = recipe.run_plan

        async def stopped(*args: Any, **kwargs: Any) -> Any:
            raise KeyboardInterrupt  # the process stopped once the old answers were copied

        monkeypatch.setattr(recipe, "run_plan", stopped)
        with pytest.raises(KeyboardInterrupt):
            _run(loop_config)
        monkeypatch.setattr(recipe, "run_plan", real)

        assert _run(loop_config).action == "promote"

        assert teacher.asked[before:] == [NEW_QUESTION]
        step = _distill_step(store)
        assert (step.counts["rows"], step.counts["reused"], step.counts["asked"]) == (6, 5, 1)
    finally:
        store.close()
