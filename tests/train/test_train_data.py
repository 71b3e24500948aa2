"""Chat JSONL in, assistant-only labels out, with the base's own chat template."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from openclone.errors import ConfigError
from openclone.train.data import (
    IGNORE_INDEX,
    read_chat_jsonl,
    split_eval,
    tokenize_conversation,
    tokenize_split,
)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    from openclone.config import bundled_model_path

    path = bundled_model_path()
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def _write(path: Path, *records: Any) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _learned_segments(tokenizer: Any, row: dict[str, list[int]]) -> list[str]:
    segments, current = [], []
    for token, label in zip(row["input_ids"], row["labels"], strict=True):
        if label != IGNORE_INDEX:
            assert label == token
            current.append(token)
        elif current:
            segments.append(tokenizer.decode(current))
            current = []
    if current:
        segments.append(tokenizer.decode(current))
    return segments


def test_labels_cover_assistant_turns_only(tokenizer: Any, tmp_path: Path) -> None:
    data = _write(
        tmp_path / "d.jsonl",
        {
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello! Code ZEBRA-7741."},
                {"role": "user", "content": "Again?"},
                {"role": "assistant", "content": "Context only.", "weight": 0},
                {"role": "user", "content": "Last one"},
                {"role": "assistant", "content": [{"type": "text", "text": "Done."}]},
            ]
        },
    )
    (conv,) = read_chat_jsonl(data)
    row = tokenize_conversation(tokenizer, conv)
    text = tokenizer.decode(row["input_ids"])
    assert text.startswith("<|im_start|>system\nYou are terse.<|im_end|>")  # the model's template
    assert "Context only." in text
    assert _learned_segments(tokenizer, row) == [
        "Hello! Code ZEBRA-7741.<|im_end|>\n",  # the end-of-turn token is learned: it stops
        "Done.<|im_end|>\n",
    ]


def test_truncation_keeps_the_start_and_drops_rows_with_nothing_to_learn(
    tokenizer: Any, tmp_path: Path
) -> None:
    long_prompt = "word " * 300
    data = _write(
        tmp_path / "d.jsonl",
        {
            "messages": [
                {"role": "user", "content": long_prompt},
                {"role": "assistant", "content": "A"},
            ]
        },
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey"}]},
    )
    split = tokenize_split(tokenizer, read_chat_jsonl(data), max_length=64)
    assert split.truncated == 1 and len(split.rows) == 1
    assert all(len(r["input_ids"]) <= 64 for r in split.rows)
    assert split.target_tokens == sum(1 for x in split.rows[0]["labels"] if x != IGNORE_INDEX)


def test_eval_split_matches_evals_held_out_rule_and_is_never_empty_or_total(
    tmp_path: Path,
) -> None:
    from openclone.evaluate.sets import split_rows

    records = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}
        for i in range(40)
    ]
    convs = read_chat_jsonl(_write(tmp_path / "d.jsonl", *records))
    train, held = split_eval(convs, 0.2)
    _, eval_held = split_rows(records, 0.2)
    # `openclone eval --split-of` grades exactly the prompts training held out.
    assert [c.messages[0]["content"] for c in held] == [
        r["messages"][0]["content"] for r in eval_held
    ]
    assert held and train and len(train) + len(held) == 40
    assert split_eval(list(reversed(convs)), 0.2)[1] == list(reversed(held))  # order-free
    assert len(split_eval(convs[:2], 0.01)[1]) == 1
    assert len(split_eval(convs[:2], 0.99)[0]) == 1
    assert split_eval(convs, 0.0) == (convs, [])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "2: not JSON"),
        ('{"prompt": "x"}', '2: expected {"messages"'),
        ('{"messages": [{"role": "user", "content": "x"}]}', "2: no assistant message"),
        ('{"messages": [{"role": "wizard", "content": "x"}]}', "2: messages[0]: role"),
        ('{"messages": [{"role": "assistant", "content": "x", "weight": 2}]}', "weight must be"),
    ],
)
def test_bad_lines_are_named_by_line_number(tmp_path: Path, line: str, message: str) -> None:
    good = '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}'
    path = tmp_path / "d.jsonl"
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("{", r"\{")):
        read_chat_jsonl(path)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        read_chat_jsonl(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        read_chat_jsonl(tmp_path / "empty.jsonl")
