"""Training data: OpenAI chat JSONL in, token ids with assistant-only labels out.

Labels are built here rather than by TRL's ``assistant_only_loss``, which needs
``{% generation %}`` markers most templates (SmolLM2's included) lack. The conversation is
rendered with the base's own chat template; for each assistant turn the text the template
adds for it (content and end-of-turn token) is found by rendering the conversation up to
that turn with and without it, and the tokens overlapping that span keep their ids as
labels while every other token gets -100. That works for any prefix-preserving template.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from openclone.errors import ConfigError
from openclone.schema import ChatMessage

__all__ = [
    "IGNORE_INDEX",
    "Conversation",
    "TokenizedSplit",
    "read_chat_jsonl",
    "split_eval",
    "tokenize_conversation",
    "tokenize_split",
]

log = logging.getLogger("openclone.train")
IGNORE_INDEX = -100


@dataclass(frozen=True)
class Conversation:
    """One training example: messages as the chat template expects them, and which
    assistant messages (by index) are targets of the loss."""

    messages: list[dict[str, Any]]
    targets: frozenset[int]
    tools: list[dict[str, Any]] | None = None


def _message(raw: Any, where: str) -> tuple[dict[str, Any], bool]:
    """(the message as a template dict, whether it is a loss target)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a message must be a JSON object")
    weight = raw.get("weight", 1)
    if weight not in (0, 1):
        raise ConfigError(f"{where}: weight must be 0 or 1, got {weight!r}")
    try:
        msg = ChatMessage.model_validate({k: v for k, v in raw.items() if k != "weight"})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{where}: {loc}: {first['msg']}") from exc
    if msg.non_text_parts():
        raise ConfigError(
            f"{where}: only text content can be trained on, got {msg.non_text_parts()}"
        )
    out: dict[str, Any] = {"role": msg.role, "content": msg.text()}
    if msg.tool_calls:
        out["tool_calls"] = [c.model_dump(exclude_none=True) for c in msg.tool_calls]
    if msg.tool_call_id:
        out["tool_call_id"] = msg.tool_call_id
    if msg.name:
        out["name"] = msg.name
    return out, msg.role == "assistant" and weight == 1


def read_chat_jsonl(path: Path) -> list[Conversation]:
    """Every conversation in ``path``; a bad line is an error naming its line number."""
    if not path.is_file():
        raise ConfigError(f"dataset not found: {path}")
    conversations = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{where}: not JSON: {exc.msg}") from exc
            raw = record.get("messages") if isinstance(record, dict) else None
            if not isinstance(raw, list) or not raw:
                raise ConfigError(
                    f'{where}: expected {{"messages": [...]}} with at least one message'
                )
            pairs = [_message(m, f"{where}: messages[{i}]") for i, m in enumerate(raw)]
            targets = frozenset(i for i, (_, target) in enumerate(pairs) if target)
            if not targets:
                raise ConfigError(f"{where}: no assistant message to learn from")
            tools = record.get("tools")
            conversations.append(Conversation([m for m, _ in pairs], targets, tools or None))
    if not conversations:
        raise ConfigError(f"dataset is empty: {path}")
    return conversations


def split_eval(
    conversations: Sequence[Conversation], fraction: float, seed: int = 0
) -> tuple[list[Conversation], list[Conversation]]:
    """(train, eval) by the rule ``openclone eval --split-of`` uses (a hash of each prompt),
    so a held-out evaluation never grades a prompt the model trained on. At least one row is
    held out when ``fraction`` > 0, and never all of them. ``seed`` is kept for callers; the
    split is the dataset's, not the run's, so it does not change it."""
    from openclone.evaluate.sets import split_key, split_rows

    if fraction <= 0 or len(conversations) < 2:
        return list(conversations), []

    def key(c: Conversation) -> str:
        return split_key({"messages": c.messages})

    train, held = split_rows(list(conversations), fraction, 0, key=key)
    # Tiny sets: move the row nearest the cut across it.
    if not held:
        nearest = min(train, key=lambda c: _rank(key(c)))
        train.remove(nearest)
        held.append(nearest)
    elif not train:
        nearest = max(held, key=lambda c: _rank(key(c)))
        held.remove(nearest)
        train.append(nearest)
    order = {id(c): i for i, c in enumerate(conversations)}
    return sorted(train, key=lambda c: order[id(c)]), sorted(held, key=lambda c: order[id(c)])


def _rank(key: str) -> float:
    from openclone.data.split import split_unit

    return split_unit(key, 0)


def _render(tokenizer: Any, conv: Conversation, upto: int, generation_prompt: bool) -> str:
    text: str = tokenizer.apply_chat_template(
        conv.messages[:upto],
        tools=conv.tools,
        tokenize=False,
        add_generation_prompt=generation_prompt,
    )
    return text


def tokenize_conversation(tokenizer: Any, conv: Conversation) -> dict[str, list[int]]:
    """``input_ids`` of the rendered conversation and ``labels`` set only on target turns."""
    full = _render(tokenizer, conv, len(conv.messages), False)
    spans = []
    for i in sorted(conv.targets):
        before = _render(tokenizer, conv, i, True) if i else ""
        start = len(before)
        through = _render(tokenizer, conv, i + 1, False)
        if not (full.startswith(through) and through.startswith(before)):
            raise ConfigError(
                "the chat template does not render conversations prefix-consistently (it rewrites "
                "earlier turns), so assistant tokens cannot be located; use a base whose template "
                "keeps earlier turns as they are"
            )
        spans.append((start, len(through)))
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    labels = [IGNORE_INDEX] * len(ids)
    for t, (a, b) in enumerate(enc["offset_mapping"]):
        # Overlap, not containment: a token merged across the boundary still predicts reply text.
        if any(a < end and b > start for start, end in spans):
            labels[t] = ids[t]
    return {"input_ids": ids, "labels": labels}


@dataclass(frozen=True)
class TokenizedSplit:
    rows: list[dict[str, list[int]]]
    conversations: int
    truncated: int  # conversations longer than max_length (their tail is cut)
    target_tokens: int  # tokens that carry a label, after truncation


def tokenize_split(
    tokenizer: Any, conversations: Sequence[Conversation], max_length: int
) -> TokenizedSplit:
    """Tokenize all; rows whose targets all fall past ``max_length`` are dropped with a log line."""
    rows, truncated, dropped, targets = [], 0, 0, 0
    for conv in conversations:
        row = tokenize_conversation(tokenizer, conv)
        if len(row["input_ids"]) > max_length:
            truncated += 1
            row = {k: v[:max_length] for k, v in row.items()}
        n = sum(1 for x in row["labels"] if x != IGNORE_INDEX)
        if n == 0:
            dropped += 1
            continue
        targets += n
        rows.append(row)
    if truncated:
        log.warning(
            "%d of %d conversations exceed max_length=%d tokens and are truncated (%d dropped: "
            "nothing left to learn); raise max_length to keep them whole",
            truncated,
            len(conversations),
            max_length,
            dropped,
        )
    return TokenizedSplit(rows, len(conversations), truncated, targets)
