"""What one request may ask of the gateway, checked before any engine or lookup sees it.

Each limit is a :class:`~openclone.config.Settings` field and each refusal a 400 that names
the parameter, so a client learns what to change. The checks live here rather than in the
wire schema because they are configurable, and the schema types also serve datasets and
training, which have no gateway settings. The request body's size is capped earlier, by
:mod:`openclone.gateway.body_limit`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel

from openclone.config import Settings
from openclone.errors import InvalidRequestError
from openclone.schema import ChatCompletionRequest, CompletionRequest

__all__ = ["check_model_name", "check_request", "check_text", "schema_repeats"]

# JSON may escape half of a UTF-16 pair ("\ud800") and Python's json keeps it, but such a
# string cannot be encoded as UTF-8 for an engine: refuse it with a 400, not a 502 later.
_SURROGATE = re.compile("[\ud800-\udfff]")
# Keywords whose number becomes that many copies of a rule in the engine's grammar.
_REPEAT_KEYS = frozenset(
    {
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "minProperties",
        "maxProperties",
        "minContains",
        "maxContains",
    }
)
_QUANTIFIER = re.compile(r"\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")  # a regex's {n} / {n,m}
_HUGE = 10**9  # any count with more digits than this is over every limit anyway


def check_request(req: BaseModel, settings: Settings, *, scan_text: bool = True) -> None:
    """Every limit that applies to ``req`` (a chat or completion request, or any request
    with a ``model`` field); raises :class:`InvalidRequestError` at the first one over.
    ``scan_text=False`` skips the surrogate walk, for a body known to hold no ``\\ud8``
    to ``\\udf`` escape."""
    model = getattr(req, "model", None)
    if isinstance(model, str):
        check_model_name(model, settings)
    if scan_text:
        check_text(req)
    if isinstance(req, CompletionRequest):
        _check_prompts(req, settings)
    elif isinstance(req, ChatCompletionRequest):
        _check_chat(req, settings)


def check_model_name(name: str, settings: Settings) -> None:
    # Before any lookup: a name is a dict key, a file name (trained models), a fuzzy match
    # in the 404's hint, and must stay cheap at each.
    limit = settings.max_model_name_chars
    if len(name) > limit:
        raise InvalidRequestError(
            f"The model name is {len(name)} characters long; model names are at most "
            f"{limit} characters.",
            param="model",
            code="model_name_too_long",
        )


def check_text(value: BaseModel) -> None:
    """Refuse a lone UTF-16 surrogate anywhere in the request (it is not Unicode text)."""
    where = _lone_surrogate(value)
    if where is not None:
        raise InvalidRequestError(
            f"Invalid value for '{where}': the text holds an unpaired UTF-16 surrogate "
            "(\\ud800-\\udfff), which is not valid Unicode. Send text as valid UTF-8.",
            param=where.split(".")[0].split("[")[0] or None,
            code="invalid_unicode",
        )


def _lone_surrogate(root: BaseModel) -> str | None:
    """The path of the first string holding a surrogate, or None. Iterative: a client's
    JSON schema can nest deeper than Python's recursion limit."""
    stack: list[tuple[str, Any]] = [("", root)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return path
        elif isinstance(value, BaseModel):
            fields = type(value).model_fields
            for key, item in value.__dict__.items():
                info = fields.get(key)
                stack.append((_join(path, (info.alias if info else None) or key), item))
            for key, item in (value.model_extra or {}).items():
                stack.append((_join(path, key), item))
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and _SURROGATE.search(key):
                    return _join(path, "<key>")
                stack.append((_join(path, str(key)), item))
        elif isinstance(value, list | tuple):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
    return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _check_prompts(req: CompletionRequest, settings: Settings) -> None:
    # Each prompt is a separate generation, run one after another: cost grows with the list.
    count = len(req.prompts())
    if count > settings.max_prompts:
        raise InvalidRequestError(
            f"'prompt' holds {count} prompts; at most {settings.max_prompts} are allowed "
            "per request.",
            param="prompt",
            code="too_many_prompts",
        )
    if count * req.n > settings.max_choices:
        raise InvalidRequestError(
            f"n * prompts is {req.n} * {count} = {req.n * count} completions; at most "
            f"{settings.max_choices} are allowed per request.",
            param="n",
            code="too_many_choices",
        )


def _check_chat(req: ChatCompletionRequest, settings: Settings) -> None:
    tools = req.tools or []
    if len(tools) > settings.max_tools:
        raise InvalidRequestError(
            f"'tools' holds {len(tools)} tools; at most {settings.max_tools} are allowed.",
            param="tools",
            code="too_many_tools",
        )
    fmt = req.response_format
    if fmt is not None and fmt.json_schema is not None and fmt.json_schema.schema_ is not None:
        _check_schema(fmt.json_schema.schema_, "response_format", settings)
    for i, tool in enumerate(tools):
        if tool.function.parameters is not None:
            _check_schema(tool.function.parameters, f"tools[{i}].function.parameters", settings)


def _check_schema(schema: dict[str, Any], where: str, settings: Settings) -> None:
    """A schema becomes a grammar the engine builds before the first token: its size and
    its repeat counts bound that work (minItems 300000 took 10 s, or crashed the parser)."""
    param = where.split("[")[0].split(".")[0]
    try:
        size = len(json.dumps(schema, ensure_ascii=False))
    except (RecursionError, ValueError):  # nested past what json can walk, or circular
        raise InvalidRequestError(
            f"The JSON schema in '{where}' is nested too deeply.", param=param
        ) from None
    if size > settings.max_schema_bytes:
        raise InvalidRequestError(
            f"The JSON schema in '{where}' is {size} characters long; at most "
            f"{settings.max_schema_bytes} are allowed.",
            param=param,
            code="schema_too_large",
        )
    repeats = schema_repeats(schema)
    if repeats > settings.max_schema_repeat:
        raise InvalidRequestError(
            f"The JSON schema in '{where}' asks for {repeats:.0f} repetitions in all "
            "(minItems, maxItems, minLength, maxLength, minProperties, maxProperties and "
            f"{{n,m}} in patterns, summed); at most {settings.max_schema_repeat} are allowed.",
            param=param,
            code="schema_too_complex",
        )


def schema_repeats(schema: Any) -> float:
    """The sum of every repeat count in ``schema``: what its grammar's size grows with."""
    total = 0.0
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in _REPEAT_KEYS and _is_number(value):
                    total += max(0, min(value, _HUGE))  # 1e999 and 10**400 are JSON too
                elif key == "pattern" and isinstance(value, str):
                    total += sum(_count(n) for pair in _QUANTIFIER.findall(value) for n in pair)
                else:
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    return total


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _count(digits: str) -> int:
    # int() refuses strings of over 4,300 digits; no count that long is allowed anyway.
    return int(digits) if 0 < len(digits) <= 9 else (_HUGE if digits else 0)
