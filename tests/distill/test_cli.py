"""``openclone distill`` and ``openclone data convert`` from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from distill.standin import StandInTeacher
from openclone.cli import app
from openclone.distill import load_seeds

runner = CliRunner()
SEED = load_seeds().tasks[0].instruction


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_convert_round_trips_alpaca_through_chat_and_sharegpt(tmp_path: Path) -> None:
    alpaca = [
        {
            "instruction": "Translate to French.",
            "input": "Good night",
            "output": "Bonne nuit",
            "id": 7,
        },
        {"instruction": "Name a prime number.", "input": "", "output": "Seven."},
        {
            "instruction": "And one more?",
            "input": "",
            "output": "Eleven.",
            "system": "Be brief.",
            "history": [["Name a prime.", "Two."]],
        },
    ]
    src = tmp_path / "alpaca.json"
    src.write_text(json.dumps(alpaca))
    chat, share, back = tmp_path / "chat.jsonl", tmp_path / "share.jsonl", tmp_path / "back.json"
    for args in (
        [str(src), "--to", "openai", "--out", str(chat)],
        [str(chat), "--to", "sharegpt", "--out", str(share)],
        [str(share), "--to", "openai", "--out", str(tmp_path / "chat2.jsonl")],
        [str(chat), "--to", "alpaca", "--out", str(back)],
    ):
        result = runner.invoke(app, ["data", "convert", *args])
        assert result.exit_code == 0, result.output
        assert "wrote 3 of 3 rows" in result.output
    assert json.loads(back.read_text()) == alpaca
    first = _rows(chat)[0]
    assert first["messages"] == [
        {"role": "user", "content": "Translate to French.\n\nGood night"},
        {"role": "assistant", "content": "Bonne nuit"},
    ]
    assert _rows(share)[2]["conversations"][0] == {"from": "system", "value": "Be brief."}
    # ShareGPT keeps no metadata, so the instruction and input come back joined.
    assert _rows(tmp_path / "chat2.jsonl")[1]["messages"] == _rows(chat)[1]["messages"]


def test_convert_counts_rows_the_target_cannot_hold_and_names_bad_lines(tmp_path: Path) -> None:
    src = tmp_path / "chat.jsonl"
    tool_call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    src.write_text(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "hi there"},
                    {"role": "assistant", "content": "hello"},
                ]
            }
        )
        + "\n"
        + json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    {"role": "assistant", "tool_calls": [tool_call]},
                ]
            }
        )
        + "\n"
    )
    result = runner.invoke(
        app, ["data", "convert", str(src), "--to", "alpaca", "--out", str(tmp_path / "a.json")]
    )
    assert result.exit_code == 0 and "skipped 1 (tool calls)" in result.output
    src.write_text('{"messages": []}\nnot json\n')
    result = runner.invoke(
        app, ["data", "convert", str(src), "--to", "alpaca", "--out", str(tmp_path / "a.json")]
    )
    assert result.exit_code == 2 and "line 2" in result.output
    result = runner.invoke(
        app, ["data", "convert", str(src), "--to", "csv", "--out", str(tmp_path / "a.json")]
    )
    assert result.exit_code == 2 and "openai, alpaca, sharegpt" in result.output


def test_user_mistakes_are_clear_errors(tmp_path: Path) -> None:
    out = str(tmp_path / "d.jsonl")
    result = runner.invoke(
        app, ["distill", "--count", "2", "--out", out, "--seeds", str(tmp_path / "no.jsonl")]
    )
    assert result.exit_code == 2 and "seed file not found" in result.output
    result = runner.invoke(app, ["distill", "--count", "2", "--out", out, "--teacher", "gpt-9"])
    assert result.exit_code == 1
    assert "unknown teacher model 'gpt-9'; the catalog has: smollm2-135m-instruct" in result.output
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"nope": 1}\n')
    result = runner.invoke(
        app, ["distill", "--count", "2", "--out", out, "--prompts", str(prompts)]
    )
    assert result.exit_code == 2 and "p.jsonl, line 2" in result.output
    result = runner.invoke(
        app, ["distill", "--count", "2", "--out", out, "--prompts", str(prompts), "--from-captures"]
    )
    assert result.exit_code == 2 and "choose one" in result.output
    prices = tmp_path / "prices.toml"
    prices.write_text('[prices.smollm2-135m-instruct]\ninput = "free"\n')
    result = runner.invoke(app, ["distill", "--count", "2", "--out", out, "--prices", str(prices)])
    assert result.exit_code == 2 and "prices.smollm2-135m-instruct" in result.output


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch) -> list[StandInTeacher]:
    """The CLI's teacher replaced by stand-ins, handed out in order."""
    made: list[StandInTeacher] = []

    async def open_standin(settings: object, teacher: str, *_: object) -> StandInTeacher:
        interrupt = 3 if not made else None  # the first run is Ctrl-C'd after 3 answers
        client = StandInTeacher(
            seed_instruction=SEED, interrupt_after_answers=interrupt, models=[teacher]
        )
        made.append(client)
        return client

    monkeypatch.setattr("openclone.distill.teacher.open_teacher_client", open_standin)
    return made


def test_ctrl_c_then_the_same_command_finishes_the_run(
    tmp_path: Path, standin: list[StandInTeacher]
) -> None:
    out = tmp_path / "d.jsonl"
    prices = tmp_path / "prices.toml"
    prices.write_text("[prices.smollm2-135m-instruct]\ninput = 1.0\noutput = 4.0\n")
    args = [
        "distill",
        "--count",
        "8",
        "--out",
        str(out),
        "--concurrency",
        "1",
        "--prices",
        str(prices),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 130, result.output
    assert "run the same command again" in result.output
    assert len(_rows(out)) == 3
    assert json.loads(out.with_suffix(".card.json").read_text())["status"] == "interrupted"

    result = runner.invoke(app, [*args, "--price-output", "10"])
    assert result.exit_code == 0, result.output
    assert "complete" in result.output and "(5 new)" in result.output
    rows = _rows(out)
    assert len(rows) == 8 and len({r["metadata"]["instruction"] for r in rows}) == 8
    card = json.loads(out.with_suffix(".card.json").read_text())
    assert card["prices_usd_per_million_tokens"] == {"input": 1.0, "output": 10.0}
    assert card["cost_usd"] > 0 and card["sessions"] == 2


def test_from_captures_with_nothing_consented_ends_cleanly(
    tmp_path: Path, standin: list[StandInTeacher]
) -> None:
    out = tmp_path / "c.jsonl"
    args = ["distill", "--from-captures", "--count", "5", "--out", str(out)]
    result = runner.invoke(app, [*args, "--since", "2020-01-01"])
    assert result.exit_code == 0, result.output
    assert "prompts exhausted" in result.output and out.read_text() == ""
    card = json.loads(out.with_suffix(".card.json").read_text())
    assert card["mode"] == "prompts" and "since" in card["source"]["captures"]
    result = runner.invoke(app, [*args, "--tenant", "nobody"])
    assert result.exit_code == 2 and "no tenant named 'nobody'" in result.output
    result = runner.invoke(app, [*args, "--since", "last week"])
    assert result.exit_code == 2 and "expected a date like 2026-01-31" in result.output


def test_prices_in_openclone_toml_are_the_default_and_a_flag_beats_them(
    tmp_path: Path, standin: list[StandInTeacher]
) -> None:
    config = tmp_path / "openclone.toml"
    config.write_text('[prices."smollm2-135m-instruct"]\ninput = 3.0\noutput = 6.0\n')
    out = tmp_path / "d.jsonl"
    args = ["distill", "--count", "2", "--out", str(out), "--config", str(config)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    card = json.loads(out.with_suffix(".card.json").read_text())
    assert card["prices_usd_per_million_tokens"] == {"input": 3.0, "output": 6.0}
    result = runner.invoke(app, [*args, "--count", "3", "--price-output", "1"])
    assert result.exit_code == 0, result.output
    card = json.loads(out.with_suffix(".card.json").read_text())
    assert card["prices_usd_per_million_tokens"] == {"input": 3.0, "output": 1.0}
    config.write_text('[prices."smollm2-135m-instruct"]\ninput = "free"\n')
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "prices" in result.output
