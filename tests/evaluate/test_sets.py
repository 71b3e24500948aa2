"""Eval sets: the bundled set, chat JSONL and Alpaca files, held-out splits."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from openclone.data.formats import DatasetFormatError
from openclone.evaluate.sets import held_out_set, load_prompt_set, read_items, split_rows


def test_bundled_general_set_is_varied_and_has_references() -> None:
    pset = load_prompt_set()
    assert pset.name == "general" and 90 <= len(pset.items) <= 120
    assert len({i.prompt for i in pset.items}) == len(pset.items)
    categories = {i.category for i in pset.items}
    assert {"writing", "coding", "math", "reasoning", "extraction", "email"} <= categories
    assert sum(i.reference is not None for i in pset.items) >= 20
    # --limit takes the first N: they already span many categories.
    assert len({i.category for i in load_prompt_set("general", limit=10).items}) == 10
    assert all(m.role != "assistant" for i in pset.items for m in i.messages)


def test_chat_jsonl_final_assistant_is_the_reference(tmp_path: Path) -> None:
    path = tmp_path / "set.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": [{"type": "text", "text": "Name a colour"}]},
            ],
            "id": "multi",
        },
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    first, second = read_items(path)
    assert (first.prompt, first.reference, len(first.messages)) == ("2+2?", "4", 1)
    assert second.reference is None and second.id == "multi"
    assert second.prompt == "Hi\n\nName a colour"
    assert [m.role for m in second.messages] == ["system", "user", "assistant", "user"]


def test_alpaca_json_and_plain_prompts(tmp_path: Path) -> None:
    path = tmp_path / "alpaca.json"
    path.write_text(
        json.dumps(
            [
                {"instruction": "Translate", "input": "bonjour", "output": "hello"},
                {"instruction": "Tell a joke", "input": "", "output": ""},
            ]
        )
    )
    a, b = load_prompt_set(path).items
    assert (a.prompt, a.reference) == ("Translate\n\nbonjour", "hello")
    assert (b.prompt, b.reference) == ("Tell a joke", None)
    plain = tmp_path / "plain.jsonl"
    plain.write_text('{"prompt": "Why?", "reference": "Because."}\n')
    assert read_items(plain)[0].reference == "Because."


def test_bad_files_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "ok"}\n\n{"prompt": "ok"\n')
    with pytest.raises(DatasetFormatError, match=r"bad.jsonl, line 3: not valid JSON"):
        read_items(path)
    path.write_text('{"prompt": "ok"}\n{"messages": [{"role": "assistant", "content": "x"}]}\n')
    with pytest.raises(DatasetFormatError, match=r"line 2: .*no user message"):
        read_items(path)
    path.write_text('{"text": "?"}\n')
    with pytest.raises(DatasetFormatError, match=r"line 1: no 'messages', 'instruction'"):
        read_items(path)
    with pytest.raises(DatasetFormatError, match=r"prompt set not found: .*bundled sets: general"):
        load_prompt_set(tmp_path / "missing.jsonl")


def _rows(n: int) -> list[dict[str, object]]:
    return [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}
        for i in range(n)
    ]


def test_split_rows_is_deterministic_order_free_and_keeps_prompts_together() -> None:
    rows = _rows(4000)
    train, held = split_rows(rows, 0.05, seed=0)
    assert len(train) + len(held) == 4000 and 150 <= len(held) <= 250
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    _, held2 = split_rows(shuffled, 0.05, seed=0)
    key = lambda r: r["messages"][0]["content"]  # noqa: E731
    assert sorted(map(key, held2)) == sorted(map(key, held))
    # The same prompt with another answer lands on the same side (no leak into training).
    twin = {
        "messages": [
            {"role": "user", "content": key(held[0])},
            {"role": "assistant", "content": "b"},
        ]
    }
    assert split_rows([twin], 0.05, seed=0) == ([], [twin])
    # Raw JSONL lines split exactly like parsed rows; another seed gives another split.
    _, held_raw = split_rows([json.dumps(r).encode() for r in rows], 0.05, seed=0)
    assert [json.loads(r) for r in held_raw] == held
    assert split_rows(rows, 0.05, seed=1)[1] != held
    with pytest.raises(ValueError, match="fraction"):
        split_rows(rows, 1.5)


def test_held_out_set_reads_the_held_out_rows(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    rows = _rows(400)
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    pset = held_out_set(path, 0.1, seed=0)
    _, held = split_rows(rows, 0.1, seed=0)
    assert [i.prompt for i in pset.items] == [r["messages"][0]["content"] for r in held]
    assert all(i.reference == "a" for i in pset.items)
    assert "held-out 0.1" in pset.name
    tiny = tmp_path / "tiny.jsonl"
    tiny.write_text(json.dumps(rows[0]) + "\n")
    with pytest.raises(DatasetFormatError, match="is empty"):
        held_out_set(tiny, 0.0001)
