"""Function calling for local models that have no native tool format.

The tools are described to the model in a system message; when the client forces a call
(``tool_choice`` ``required`` or a named function) the output is constrained by a JSON
schema grammar, otherwise the model may answer in prose and a reply that is a well-formed
call to a known tool is returned as ``tool_calls``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from openclone.schema import ChatCompletionRequest, ChatMessage, FunctionCall, Tool, ToolCall


def active_tools(req: ChatCompletionRequest) -> list[Tool]:
    if not req.tools or req.tool_choice == "none":
        return []
    if isinstance(req.tool_choice, dict):
        wanted = (req.tool_choice.get("function") or {}).get("name")
        chosen = [t for t in req.tools if t.function.name == wanted]
        if not chosen:
            from openclone.errors import InvalidRequestError

            raise InvalidRequestError(
                f"tool_choice names function {wanted!r}, which is not in tools", param="tool_choice"
            )
        return chosen
    return list(req.tools)


def forced(req: ChatCompletionRequest) -> bool:
    return req.tool_choice == "required" or isinstance(req.tool_choice, dict)


def tools_system_message(tools: list[Tool], must_call: bool) -> ChatMessage:
    specs = [
        {
            "name": t.function.name,
            "description": t.function.description or "",
            "parameters": t.function.parameters or {"type": "object", "properties": {}},
        }
        for t in tools
    ]
    rule = (
        "You must call one of them."
        if must_call
        else "If one of them is needed, reply with only the call; otherwise answer normally."
    )
    text = (
        "You can call these functions:\n"
        + json.dumps(specs, ensure_ascii=False)
        + f'\nTo call a function reply with JSON: {{"name": <function name>, "arguments": <object>}}. {rule}'
    )
    return ChatMessage(role="system", content=text)


def call_schema(tools: list[Tool]) -> dict[str, Any]:
    options = [
        {
            "type": "object",
            "properties": {
                "name": {"const": t.function.name},
                "arguments": t.function.parameters or {"type": "object"},
            },
            "required": ["name", "arguments"],
        }
        for t in tools
    ]
    return options[0] if len(options) == 1 else {"anyOf": options}


def parse_tool_call(text: str, tools: list[Tool]) -> list[ToolCall] | None:
    """A reply that is exactly a JSON call to a known tool, else None (it's prose)."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.strip("`").removeprefix("json").strip()
    try:
        obj = json.loads(stripped)
    except ValueError:
        return None
    calls = obj if isinstance(obj, list) else [obj]
    names = {t.function.name for t in tools}
    out: list[ToolCall] = []
    for call in calls:
        if not isinstance(call, dict) or call.get("name") not in names:
            return None
        args = call.get("arguments", {})
        out.append(
            ToolCall(
                id=f"call_{uuid.uuid4().hex[:24]}",
                function=FunctionCall(
                    name=call["name"],
                    arguments=args
                    if isinstance(args, str)
                    else json.dumps(args, ensure_ascii=False),
                ),
            )
        )
    return out or None


def messages_for_template(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """Plain role/content dicts that any chat template can render, tool turns included."""
    out: list[dict[str, Any]] = []
    for m in messages:
        content = m.text()
        role: str = m.role
        if m.role == "developer":
            role = "system"
        if m.tool_calls:
            calls = [
                {"name": c.function.name, "arguments": _loads_or_str(c.function.arguments)}
                for c in m.tool_calls
            ]
            content = (content + "\n" if content else "") + json.dumps(
                calls[0] if len(calls) == 1 else calls, ensure_ascii=False
            )
        if m.role in ("tool", "function"):
            role = "user"
            content = f"Function result ({m.name or m.tool_call_id or 'tool'}): {content}"
        out.append({"role": role, "content": content})
    return out


def _loads_or_str(s: str) -> Any:
    try:
        return json.loads(s)
    except ValueError:
        return s
