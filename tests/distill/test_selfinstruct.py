"""The Self-Instruct loop against the stand-in teacher: counts, retries, cost, resume."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from distill.standin import StandInTeacher, rate_limited, server_error
from openclone.data.dedupe import rouge_l, tokenize
from openclone.data.formats import from_chat
from openclone.distill import (
    DistillConfig,
    DistillError,
    Price,
    ProgressEvent,
    RetryPolicy,
    distill_self_instruct,
    load_seeds,
)
from openclone.distill.output import state_path
from openclone.errors import ModelNotFound

SEED = load_seeds().tasks[0].instruction
FAST = RetryPolicy(max_attempts=3, backoff=0.0)


def _config(out: Path, **kw: Any) -> DistillConfig:
    defaults: dict[str, Any] = {"teacher": "standin", "retry": FAST, "random_seed": 3}
    return DistillConfig(out=out, **(defaults | kw))


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _card(out: Path) -> dict[str, Any]:
    return json.loads(out.with_suffix(".card.json").read_text())


def _assert_counts_add_up(out: Path) -> None:
    # Every task read out of a reply was kept, dropped for one reason, or left unused.
    counts = _card(out)["counts"]
    assert counts["kept"] == len(_rows(out))
    assert counts["tasks_written"] == counts["kept"] + counts["dropped_total"] + counts["unused"]


def test_every_defect_is_dropped_for_its_reason_and_counted_in_the_card(tmp_path: Path) -> None:
    # One reply holds four good tasks (answered echoed, blank, as a refusal, and well) and
    # seven bad items; with one worker the order, and so every count, is exact.
    teacher = StandInTeacher(
        seed_instruction=SEED,
        markers=("echo", "blank", "refuse", ""),
        fail={2: rate_limited(), 4: server_error()},
    )
    out = tmp_path / "data.jsonl"
    cfg = _config(out, count=1, concurrency=1, price=Price(3.0, 15.0))
    result = asyncio.run(distill_self_instruct(cfg, teacher))

    assert result.status == "complete" and result.kept == 1 and result.new == 1
    card = _card(out)
    expected = {
        "echoed_answer": 1,
        "empty_answer": 1,
        "refused_answer": 1,
        "near_duplicate": 2,
        "not_text_task": 1,
        "too_short": 1,
        "bad_start": 1,
        "refusal": 1,
        "truncated": 1,
    }
    assert card["counts"]["dropped"] == expected
    counts = card["counts"]
    assert counts["tasks_written"] == 11 and counts["unused"] == 0
    assert counts["tasks_written"] == counts["kept"] + counts["dropped_total"] + counts["unused"]

    # Two failed calls were retried; the bill is the stand-in's own tally at the set prices.
    assert teacher.raised == 2 and card["requests"]["retries"] == 2
    assert card["requests"] == {
        "task_writing": 1,
        "answers": 4,
        "retries": 2,
        "failed": 0,
        "rejected": 0,
    }
    assert card["tokens"]["prompt"] == teacher.prompt_tokens
    assert card["tokens"]["completion"] == teacher.completion_tokens
    assert card["cost_usd"] == pytest.approx(
        (teacher.prompt_tokens * 3 + teacher.completion_tokens * 15) / 1e6, abs=1e-6
    )
    (row,) = _rows(out)
    meta = row["metadata"]
    assert meta["source"] == "self-instruct" and meta["teacher"] == "standin"
    assert meta["input"] == "some material 3"
    user = f"{meta['instruction']}\n\n{meta['input']}"
    assert row["messages"][0] == {"role": "user", "content": user}
    assert row["messages"][1]["content"].startswith("A careful answer")
    assert card["sha256"] and card["teacher"] == "standin" and card["status"] == "complete"
    assert card["source"]["seeds"]["source"] == "bundled"
    md = out.with_suffix(".card.md").read_text()
    assert "| near_duplicate | 2 |" in md and "standin" in md


def test_many_workers_reach_the_count_exactly_with_no_near_duplicates(tmp_path: Path) -> None:
    teacher = StandInTeacher(seed_instruction=SEED, delay=0.001)
    out = tmp_path / "data.jsonl"
    events: list[ProgressEvent] = []
    result = asyncio.run(
        distill_self_instruct(
            _config(out, count=25, concurrency=8), teacher, on_progress=events.append
        )
    )
    rows = _rows(out)
    assert result.kept == len(rows) == 25
    instructions = [r["metadata"]["instruction"] for r in rows]
    assert len(set(instructions)) == 25
    tokens = [tokenize(i) for i in instructions]
    assert max(rouge_l(a, b) for i, a in enumerate(tokens) for b in tokens[:i]) <= 0.7
    assert events[-1].kept == 25 and events[-1].count == 25
    _assert_counts_add_up(out)
    # Alpaca export is lossless: instruction and input come back apart.
    alpaca = from_chat(rows[1], "alpaca")
    assert (alpaca["instruction"], alpaca["input"]) == (
        rows[1]["metadata"]["instruction"],
        rows[1]["metadata"]["input"],
    )


def test_a_teacher_that_writes_no_usable_task_stops_at_the_round_budget(tmp_path: Path) -> None:
    class Useless(StandInTeacher):
        def _task_list(self) -> str:
            self.task_rounds += 1
            return "I'm sorry, but I can't help with that."

    teacher = Useless(seed_instruction=SEED)
    out = tmp_path / "data.jsonl"
    result = asyncio.run(distill_self_instruct(_config(out, count=5, max_rounds=4), teacher))
    assert result.status == "budget exhausted" and result.kept == 0
    assert teacher.task_rounds == 4 and result.dropped == {"refusal": 4}


def test_an_interrupted_run_resumes_without_duplicates(tmp_path: Path) -> None:
    out = tmp_path / "data.jsonl"
    cfg = _config(out, count=12, concurrency=4)

    async def interrupted() -> None:
        def stop_at_five(event: ProgressEvent) -> None:
            if event.kept >= 5:
                run.cancel()  # what asyncio.run does to the run on Ctrl-C

        teacher = StandInTeacher(seed_instruction=SEED, delay=0.002)
        run = asyncio.ensure_future(distill_self_instruct(cfg, teacher, on_progress=stop_at_five))
        await run

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(interrupted())
    first = _rows(out)
    assert 5 <= len(first) < 12
    assert _card(out)["status"] == "interrupted"
    state = json.loads(state_path(out).read_text())
    assert state["status"] == "interrupted" and state["sessions"] == 1
    _assert_counts_add_up(out)

    # A crash in the middle of writing a row leaves half a line: it is cut off on resume.
    with out.open("ab") as f:
        f.write(b'{"messages": [{"role": "user", "content": "half a')
    # The stand-in starts its pseudo-words over, so it repeats the first session's tasks:
    # they must be recognised as near-duplicates of the rows already kept.
    result = asyncio.run(distill_self_instruct(cfg, StandInTeacher(seed_instruction=SEED)))
    rows = _rows(out)
    assert result.status == "complete" and len(rows) == 12 and result.new == 12 - len(first)
    assert rows[: len(first)] == first
    instructions = [r["metadata"]["instruction"] for r in rows]
    assert len(set(instructions)) == 12
    card = _card(out)
    assert card["sessions"] == 2 and card["counts"]["dropped"]["near_duplicate"] >= len(first)
    _assert_counts_add_up(out)
    # Asking again for what is already there sends nothing.
    again = StandInTeacher(seed_instruction=SEED)
    assert asyncio.run(distill_self_instruct(cfg, again)).status == "complete"
    assert again.calls == 0 and len(_rows(out)) == 12


def test_output_that_is_not_a_distill_run_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "precious.jsonl"
    out.write_text('{"messages": []}\n')
    with pytest.raises(DistillError, match="not a distill run in progress"):
        asyncio.run(
            distill_self_instruct(_config(out, count=2), StandInTeacher(seed_instruction=SEED))
        )
    assert out.read_text() == '{"messages": []}\n'


def test_the_same_output_cannot_be_written_by_two_runs_or_another_teacher(tmp_path: Path) -> None:
    out = tmp_path / "data.jsonl"
    asyncio.run(distill_self_instruct(_config(out, count=1), StandInTeacher(seed_instruction=SEED)))
    other = StandInTeacher(seed_instruction=SEED, models=["standin", "bigger"])
    with pytest.raises(DistillError, match="teacher 'standin'"):
        asyncio.run(distill_self_instruct(_config(out, count=2, teacher="bigger"), other))

    from openclone.distill.output import DistillOutput

    held = DistillOutput.open(out, "self-instruct", "standin", {})
    try:
        with pytest.raises(DistillError, match="another distill run is writing"):
            DistillOutput.open(out, "self-instruct", "standin", {})
    finally:
        held.close("test")


def test_seed_file_errors_name_the_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(DistillError, match="seed file not found"):
        load_seeds(tmp_path / "missing.jsonl")
    bad = tmp_path / "seeds.jsonl"
    bad.write_text('{"instruction": "Say hi to the team."}\n{"instruction": \n')
    with pytest.raises(DistillError, match=r"seeds.jsonl, line 2: not valid JSON"):
        load_seeds(bad)
    bad.write_text('{"instruction": "Say hi to the team."}\n{"text": "no instruction"}\n')
    with pytest.raises(DistillError, match=r"line 2: not a seed task"):
        load_seeds(bad)
    good = tmp_path / "alpaca.json"
    good.write_text(json.dumps([{"instruction": "Name a river.", "input": "", "output": "Nile"}]))
    assert [t.output for t in load_seeds(good).tasks] == ["Nile"]


def test_a_mistyped_teacher_leaves_no_run_to_trip_over(tmp_path: Path) -> None:
    out = tmp_path / "data.jsonl"
    with pytest.raises(
        DistillError, match="unknown teacher model 'typo'; the catalog has: standin"
    ):
        asyncio.run(
            distill_self_instruct(
                _config(out, count=1, teacher="typo"), StandInTeacher(seed_instruction=SEED)
            )
        )
    assert not out.exists()
    # A server that cannot list its models says so at the first request instead...
    unknown = {n: ModelNotFound("no such model") for n in range(1, 50)}
    remote = StandInTeacher(seed_instruction=SEED, models=[], fail=unknown)
    with pytest.raises(DistillError, match="unknown teacher model 'typo'"):
        asyncio.run(distill_self_instruct(_config(out, count=1, teacher="typo"), remote))
    assert _card(out)["status"].startswith("stopped: unknown teacher model")
    # ...and the corrected command starts afresh rather than refusing the empty run.
    fixed = asyncio.run(
        distill_self_instruct(_config(out, count=2), StandInTeacher(seed_instruction=SEED))
    )
    assert fixed.status == "complete" and _card(out)["sessions"] == 1
