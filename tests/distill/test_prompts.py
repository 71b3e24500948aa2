"""Distillation of given prompts: a chat JSONL file, or the store's consented captures."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from distill.standin import StandInTeacher, server_error
from openclone.config import load_settings
from openclone.distill import (
    DistillConfig,
    DistillError,
    RetryPolicy,
    captured_prompts,
    distill_prompts,
    read_prompts,
)

FAST = RetryPolicy(max_attempts=1, backoff=0.0, give_up_after=5)


def _config(out: Path, **kw: Any) -> DistillConfig:
    return DistillConfig(out=out, teacher="standin", retry=FAST, **kw)


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _user(text: Any) -> dict[str, Any]:
    return {"role": "user", "content": text}


def _write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


CONVERSATIONS = [
    # the production answer is replaced by the teacher's
    {"messages": [_user("Explain what a mortgage is."), {"role": "assistant", "content": "old"}]},
    # multi-turn: earlier turns are context, not targets
    {
        "messages": [
            {"role": "system", "content": "You are the Acme helpdesk."},
            _user("How do I reset my password?"),
            {"role": "assistant", "content": "Use the link on the login page."},
            _user("The link has expired, what now?"),
        ]
    },
    {"messages": [_user("Explain what a mortgage is.")]},  # the same prompt again
    {"messages": [_user("   ")]},  # nothing asked
    {"messages": [_user([{"type": "image_url", "image_url": {"url": "x"}}])]},  # not text
    {"messages": [_user("Say this back to me: echo.")]},  # the stand-in echoes it
    {"messages": [_user("Write a note to the team about Friday's outage.")]},
]


def test_prompts_are_answered_with_context_kept_and_bad_ones_counted(tmp_path: Path) -> None:
    prompts = read_prompts(_write_jsonl(tmp_path / "prompts.jsonl", CONVERSATIONS))
    out = tmp_path / "answers.jsonl"
    teacher = StandInTeacher(seed_instruction="x")
    result = asyncio.run(
        distill_prompts(
            _config(out, count=10, concurrency=1), teacher, prompts, source={"prompts": "f"}
        )
    )
    assert result.status == "prompts exhausted" and result.kept == 3
    rows = _rows(out)
    assert rows[0]["messages"][0] == _user("Explain what a mortgage is.")
    assert rows[0]["messages"][1]["content"].startswith("A careful answer")
    assert len(rows[0]["messages"]) == 2  # the old answer is gone
    helpdesk = rows[1]["messages"]
    assert helpdesk[0]["role"] == "system" and helpdesk[2]["weight"] == 0
    assert helpdesk[-1]["role"] == "assistant" and "weight" not in helpdesk[-1]
    assert result.dropped == {
        "duplicate_prompt": 1,
        "empty_prompt": 1,
        "not_text_task": 1,
        "echoed_answer": 1,
    }
    card = json.loads(out.with_suffix(".card.json").read_text())
    assert card["mode"] == "prompts" and card["source"] == {"prompts": "f"}
    assert card["counts"]["kept"] == 3 and card["counts"]["dropped_total"] == 4


def test_a_rerun_skips_decided_prompts_and_retries_failed_ones(tmp_path: Path) -> None:
    prompts = read_prompts(_write_jsonl(tmp_path / "prompts.jsonl", CONVERSATIONS))
    out = tmp_path / "answers.jsonl"
    # The first answer request fails for good this time.
    first = StandInTeacher(seed_instruction="x", fail={1: server_error()})
    result = asyncio.run(distill_prompts(_config(out, count=10, concurrency=1), first, prompts))
    assert result.kept == 2 and result.dropped["teacher_failed"] == 1
    second = StandInTeacher(seed_instruction="x")
    result = asyncio.run(distill_prompts(_config(out, count=10, concurrency=1), second, prompts))
    # Only the failed prompt is asked again; the echoed and the answered ones are not.
    assert second.calls == 1 and result.kept == 3 and result.new == 1
    contents = [r["messages"][-2]["content"] for r in _rows(out)]
    assert len(contents) == len(set(contents)) == 3


def test_count_caps_the_answers_even_with_many_in_flight(tmp_path: Path) -> None:
    prompts = [[_user(f"Question number {i} about the quarterly plan?")] for i in range(40)]
    out = tmp_path / "answers.jsonl"
    teacher = StandInTeacher(seed_instruction="x", delay=0.001)
    result = asyncio.run(distill_prompts(_config(out, count=7, concurrency=8), teacher, prompts))
    assert result.status == "complete" and len(_rows(out)) == 7 and teacher.calls == 7


def test_prompt_file_errors_name_the_line(tmp_path: Path) -> None:
    with pytest.raises(DistillError, match="prompts file not found"):
        read_prompts(tmp_path / "nope.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"messages": 3}\n')
    with pytest.raises(DistillError, match=r"bad.jsonl, line 2: \"messages\" must be a list"):
        read_prompts(bad)
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n\n{oops\n')
    with pytest.raises(DistillError, match=r"bad.jsonl, line 3: not valid JSON"):
        read_prompts(bad)


def test_captures_need_the_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openclone.store.export", None)  # as if not installed
    with pytest.raises(DistillError, match="--from-captures needs the capture store"):
        captured_prompts(load_settings(None))


def test_only_consented_captures_are_distilled(tmp_path: Path) -> None:
    from openclone.gateway.capture import new_capture_id
    from openclone.store import open_store
    from openclone.store.exchange import Exchange
    from openclone.store.writer import CaptureWriter

    settings = load_settings(None)
    store = open_store(settings.database_url, settings.home)

    def exchange(text: str, train: bool) -> Exchange:
        request = {"model": "m", "messages": [_user(text)]}
        response = {
            "id": "x",
            "object": "chat.completion",
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "old answer"},
                    "finish_reason": "stop",
                }
            ],
        }
        return Exchange(
            id=new_capture_id(),
            endpoint="chat",
            model="m",
            request=request,
            response=response,
            status=200,
            latency_ms=1.0,
            stream=False,
            replica="m#0",
            usage=None,
            tenant="acme",
            user="ana",
            conversation=None,
            train=train,
        )

    writer = CaptureWriter(store)
    writer.submit(exchange("What is our refund policy for damaged goods?", True))
    writer.submit(exchange("Please never train on this private question.", False))
    writer.close()
    store.close()

    out = tmp_path / "captures.jsonl"
    prompts = captured_prompts(settings, {"tenant": "acme"})
    result = asyncio.run(
        distill_prompts(
            _config(out, count=5),
            StandInTeacher(seed_instruction="x"),
            prompts,
            source={"captures": {"tenant": "acme"}},
        )
    )
    rows = _rows(out)
    assert result.kept == 1 and len(rows) == 1
    assert rows[0]["messages"][0] == _user("What is our refund policy for damaged goods?")
    assert "private" not in out.read_text()
