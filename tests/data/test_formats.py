"""Dataset files: instruction strings out of each layout, rows back in unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openclone.data import DatasetFormatError, instruction_of, read_instructions

ALPACA = [
    {"instruction": "Give three tips for staying healthy.", "input": "", "output": "1. Eat…"},
    {"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour"},
    {"instruction": "¿Qué hora es?", "input": "", "output": "Son las tres. 😀"},
]


def test_alpaca_json_array_round_trips_the_kept_objects(tmp_path: Path) -> None:
    src = tmp_path / "alpaca_data.json"
    src.write_text(json.dumps(ALPACA, indent=4), encoding="utf-8")
    dataset = read_instructions(src)
    assert dataset.layout == "json"
    assert dataset.texts == [row["instruction"] for row in ALPACA]
    out = tmp_path / "out" / "kept.json"
    assert dataset.write(out, [True, False, True]) == 2
    assert json.loads(out.read_text(encoding="utf-8")) == [ALPACA[0], ALPACA[2]]


def test_jsonl_lines_are_written_back_byte_for_byte(tmp_path: Path) -> None:
    lines = [
        json.dumps(ALPACA[0]).encode(),
        b'{ "instruction" : "spaced \\u00e9 out",   "extra": [1, 2.50] }\r',  # CRLF kept
        json.dumps(ALPACA[2], ensure_ascii=False).encode(),  # raw UTF-8
        '{"instruction": "line\u2028separator\u0085inside"}'.encode(),  # not line breaks
    ]
    src = tmp_path / "rows.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines[:2]) + b"\n\n  \n" + b"\n".join(lines[2:]))
    dataset = read_instructions(src)
    assert dataset.layout == "jsonl"
    assert dataset.texts[1:] == [
        "spaced é out",
        ALPACA[2]["instruction"],
        "line\u2028separator\u0085inside",
    ]
    out = tmp_path / "kept.jsonl"
    dataset.write(out, [False, True, True, True])
    assert out.read_bytes() == b"".join(line + b"\n" for line in lines[1:])


def test_openai_chat_rows_use_the_first_user_message(tmp_path: Path) -> None:
    rows = [
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi!"},
            ]
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Describe"},
                        {"type": "image_url", "image_url": {"url": "data:,"}},
                        {"type": "text", "text": "this."},
                    ],
                },
                {"role": "assistant", "content": "A cat."},
                {"role": "user", "content": "Not this one."},
            ]
        },
        {
            "conversations": [
                {"from": "system", "value": "x"},
                {"from": "human", "value": "ShareGPT"},
            ]
        },
    ]
    src = tmp_path / "chat.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows))  # no final newline
    assert read_instructions(src).texts == ["Hi!", "Describe\nthis.", "ShareGPT"]


def test_a_named_field_wins_over_messages() -> None:
    row = {"prompt": "the field", "messages": [{"role": "user", "content": "the chat"}]}
    assert instruction_of(row, "prompt") == "the field"
    assert instruction_of(row) == "the chat"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"instruction": "ok"}\n{"instruction": "broken"\n', "line 2"),
        ('{"instruction": "ok"}\n["a list"]\n', "line 2: expected a JSON object"),
        ('{"output": "no instruction"}\n', "no 'instruction' field"),
        ('{"instruction": null}\n', "not a string"),
        ('{"messages": [{"role": "system", "content": "x"}]}\n', "no user message"),
        ('{"messages": [{"role": "user", "content": 5}]}\n', "no text content"),
        ('[{"instruction": "a"}, {"input": "b"}]', "row 1"),
        ("[1, 2", "not valid JSON"),
    ],
)
def test_bad_rows_are_refused_with_where_and_why(
    tmp_path: Path, content: str, message: str
) -> None:
    src = tmp_path / "bad.jsonl"
    src.write_text(content)
    with pytest.raises(DatasetFormatError, match=message) as info:
        read_instructions(src)
    assert str(src) in str(info.value)


def test_output_may_replace_the_input(tmp_path: Path) -> None:
    src = tmp_path / "rows.jsonl"
    src.write_text('{"instruction": "a"}\n{"instruction": "b"}\n')
    read_instructions(src).write(src, [False, True])
    assert src.read_text() == '{"instruction": "b"}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["rows.jsonl"]  # no temporary left


def test_decisions_must_cover_every_row(tmp_path: Path) -> None:
    src = tmp_path / "rows.jsonl"
    src.write_text('{"instruction": "a"}\n')
    with pytest.raises(ValueError, match="1 rows"):
        read_instructions(src).write(tmp_path / "o.jsonl", [True, True])
