"""Tool-call parsing for models without a native tool format."""

from __future__ import annotations

import json

import pytest

from openclone.engines.tooling import active_tools, parse_tool_call
from openclone.errors import InvalidRequestError
from openclone.schema import ChatCompletionRequest, Tool

TOOLS = [
    Tool.model_validate(
        {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
    )
]


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "add", "arguments": {"a": 1}}',
        '```json\n{"name": "add", "arguments": {"a": 1}}\n```',
        ' {"name":"add","arguments":"{\\"a\\": 1}"} ',
    ],
)
def test_calls_are_recognised(text: str) -> None:
    calls = parse_tool_call(text, TOOLS)
    assert calls is not None and calls[0].function.name == "add"
    assert json.loads(calls[0].function.arguments) == {"a": 1}
    assert calls[0].id.startswith("call_")


@pytest.mark.parametrize(
    "text",
    ["The answer is 3.", '{"name": "subtract", "arguments": {}}', '{"name": "add"', "[]", '"add"'],
)
def test_prose_and_unknown_tools_are_not_calls(text: str) -> None:
    assert parse_tool_call(text, TOOLS) is None


def test_tool_choice_naming_a_missing_function_is_rejected() -> None:
    req = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "tools": [t.model_dump() for t in TOOLS],
            "tool_choice": {"type": "function", "function": {"name": "nope"}},
        }
    )
    with pytest.raises(InvalidRequestError, match="nope"):
        active_tools(req)
