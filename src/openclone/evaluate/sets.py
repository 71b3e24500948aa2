"""Eval sets: the bundled general set, chat JSONL or Alpaca files, a held-out split of a dataset.

Accepted rows (a file is a JSONL of rows, or an Alpaca JSON array):

* OpenAI chat: ``{"messages": [...]}``. The models get every message except a final
  assistant one, which is the reference answer; the judge sees the user turns as the prompt.
* Alpaca: ``{"instruction", "input", "output"}``; a non-empty ``output`` is the reference.
* Plain: ``{"prompt": "...", "reference": "..."}`` (``reference`` optional).

``id`` and ``category`` fields are kept when present.

Held-out splits. ``split_rows`` decides a row's side by hashing its prompt text with a seed,
not by its position, so the decision survives reordering, appending and deduplication, and
the same prompt never lands on both sides. The trainer must split with the same function
(same ``fraction`` and ``seed``) or the "held-out" prompts may have been trained on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from openclone.data.formats import DatasetFormatError
from openclone.data.split import split_unit
from openclone.schema import ChatMessage

__all__ = [
    "BUNDLED_SETS",
    "EvalItem",
    "PromptSet",
    "held_out_set",
    "load_prompt_set",
    "read_items",
    "split_key",
    "split_rows",
]

BUNDLED_SETS = {"general": "general.jsonl"}
T = TypeVar("T")


@dataclass
class EvalItem:
    """One prompt of an eval set."""

    messages: list[ChatMessage]  # what the models are sent
    prompt: str  # what the judge and the reports show: the user turns
    reference: str | None = None  # a known good answer, for the reference metrics
    id: str | None = None
    category: str | None = None


@dataclass
class PromptSet:
    name: str
    items: list[EvalItem] = field(default_factory=list)


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    raise ValueError(f"message content is {type(content).__name__}, not text")


def _chat_item(row: dict[str, Any]) -> EvalItem:
    raw = row["messages"]
    if not isinstance(raw, list) or not raw:
        raise ValueError("'messages' must be a non-empty list")
    try:
        messages = [ChatMessage.model_validate(m) for m in raw]
    except ValueError as exc:
        raise ValueError(f"invalid message: {exc}") from None
    reference = None
    if messages[-1].role == "assistant":
        reference = messages[-1].text()
        messages = messages[:-1]
    users = [m.text() for m in messages if m.role == "user"]
    if not users:
        raise ValueError("the chat has no user message")
    return EvalItem(messages, "\n\n".join(users), reference or None)


def _item_of(row: Any) -> EvalItem:
    """An EvalItem from one parsed row; ValueError says why it is not one."""
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    if "messages" in row:
        item = _chat_item(row)
    elif "instruction" in row or "prompt" in row:
        key = "instruction" if "instruction" in row else "prompt"
        prompt = _text(row[key])
        extra = _text(row.get("input"))
        prompt = f"{prompt}\n\n{extra}" if extra.strip() else prompt
        if not prompt.strip():
            raise ValueError(f"empty {key!r}")
        reference = _text(row.get("output", row.get("reference")))
        item = EvalItem([ChatMessage(role="user", content=prompt)], prompt, reference or None)
    else:
        raise ValueError("no 'messages', 'instruction' or 'prompt' field")
    item.id = str(row["id"]) if row.get("id") is not None else None
    item.category = str(row["category"]) if row.get("category") is not None else None
    return item


def _rows(path: Path) -> list[tuple[str, Any]]:
    """(where, parsed row) for every row of a JSONL file or JSON array."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DatasetFormatError(
            f"prompt set not found: {path} (bundled sets: {', '.join(BUNDLED_SETS)})"
        ) from None
    except OSError as exc:
        raise DatasetFormatError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise DatasetFormatError(f"{path}: not UTF-8 text: {exc}") from exc
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except ValueError as exc:
            raise DatasetFormatError(f"{path}: not valid JSON: {exc}") from exc
        if not isinstance(rows, list):
            raise DatasetFormatError(f"{path}: expected a JSON array of rows")
        return [(f"row {i}", r) for i, r in enumerate(rows)]
    out = []
    # "\n" only: U+2028 inside a JSON string is not a line break (splitlines would split).
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip():
            try:
                out.append((f"line {number}", json.loads(line)))
            except ValueError as exc:
                raise DatasetFormatError(f"{path}, line {number}: not valid JSON: {exc}") from exc
    return out


def read_items(path: Path) -> list[EvalItem]:
    """Every row of an eval file; a bad row is a DatasetFormatError naming its line."""
    path = Path(path)
    items = []
    for where, row in _rows(path):
        try:
            items.append(_item_of(row))
        except ValueError as exc:
            raise DatasetFormatError(f"{path}, {where}: {exc}") from exc
    if not items:
        raise DatasetFormatError(f"{path}: no prompts in the file")
    return items


def load_prompt_set(spec: str | Path | None = None, limit: int | None = None) -> PromptSet:
    """A bundled set by name (``None`` is ``general``) or a file; the first ``limit`` items."""
    name = str(spec) if spec is not None else "general"
    if name in BUNDLED_SETS and not Path(name).exists():
        source = resources.files("openclone.evaluate").joinpath("data", BUNDLED_SETS[name])
        with resources.as_file(source) as path:
            items = read_items(path)
    else:
        items = read_items(Path(name))
        name = Path(name).name
    return PromptSet(name, items[:limit] if limit else items)


# ---- held-out splits -------------------------------------------------------------------


def split_key(row: Any) -> str:
    """What decides a row's side: its prompt text, else its canonical JSON."""
    if isinstance(row, bytes | str):
        try:
            row = json.loads(row)
        except ValueError:
            return row.decode("utf-8", "replace") if isinstance(row, bytes) else row
    try:
        return _item_of(row).prompt
    except ValueError:
        return json.dumps(row, sort_keys=True, ensure_ascii=False)


def split_rows(
    rows: Sequence[T], fraction: float, seed: int = 0, key: Callable[[T], str] = split_key
) -> tuple[list[T], list[T]]:
    """(train, held_out): a row is held out when the hash of its ``key`` and ``seed``, read as
    a number in [0, 1), is below ``fraction``. Rows are parsed JSON objects or raw JSONL lines.
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    train: list[T] = []
    held: list[T] = []
    for row in rows:
        (held if split_unit(key(row), seed) < fraction else train).append(row)
    return train, held


def held_out_set(
    dataset: Path, fraction: float = 0.05, seed: int = 0, limit: int | None = None
) -> PromptSet:
    """The held-out side of ``dataset`` under :func:`split_rows`, as an eval set."""
    dataset = Path(dataset)
    rows = _rows(dataset)
    _, held = split_rows(rows, fraction, seed, key=lambda r: split_key(r[1]))
    items = []
    for where, row in held:
        try:
            items.append(_item_of(row))
        except ValueError as exc:
            raise DatasetFormatError(f"{dataset}, {where}: {exc}") from exc
    if not items:
        raise DatasetFormatError(
            f"{dataset}: the held-out {fraction:g} of {len(rows)} rows is empty; "
            "raise --fraction or use a larger dataset"
        )
    name = f"{dataset.name} (held-out {fraction:g}, seed {seed})"
    return PromptSet(name, items[:limit] if limit else items)
