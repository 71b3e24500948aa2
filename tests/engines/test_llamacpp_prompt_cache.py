"""The llama.cpp engine's prompt cache: a conversation that lost its slot to another one
comes back without re-evaluating its prompt, and gets exactly the answer it would have got."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from openclone.engines.llamacpp import LlamaCppConfig, LlamaCppEngine
from openclone.schema import ChatCompletionRequest

pytest.importorskip("llama_cpp")

FIRST = (
    "Here is a long note about our release process. Every release starts with a freeze of "
    "the main branch, then the team runs the full suite on three machines, writes the "
    "changelog and asks two reviewers to sign off. Summarise the note in one sentence."
)
OTHER = "Name three colours of the rainbow, and nothing else, separated by commas."


def ask(engine: LlamaCppEngine, messages: list[dict[str, str]]) -> str:
    req = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": messages, "max_tokens": 16, "temperature": 0}
    )
    out = asyncio.run(engine.chat(req)).choices[0].message.content
    assert out is not None
    return out


def run(cache_mb: int) -> tuple[list[str], dict[str, Any]]:
    # One slot: every request takes the slot from the one before it.
    engine = LlamaCppEngine(
        "m", LlamaCppConfig(n_ctx=1024, n_parallel=1, prompt_cache_mb=cache_mb, n_threads=2)
    )
    try:
        first = ask(engine, [{"role": "user", "content": FIRST}])
        other = ask(engine, [{"role": "user", "content": OTHER}])
        again = ask(engine, [{"role": "user", "content": FIRST}])
        ask(engine, [{"role": "user", "content": OTHER}])
        follow_up = ask(
            engine,
            [
                {"role": "user", "content": FIRST},
                {"role": "assistant", "content": again},
                {"role": "user", "content": "Now in five words."},
            ],
        )
        return [first, other, again, follow_up], engine.describe()
    finally:
        asyncio.run(engine.close())


def test_a_returning_conversation_is_restored_from_the_cache_with_the_same_answers() -> None:
    with_cache, state = run(cache_mb=64)
    without, off_state = run(cache_mb=0)

    assert with_cache == without  # restored KV gives the answers fresh evaluation gives
    assert with_cache[0] == with_cache[2]
    assert "prompt_cache" not in off_state
    stats = state["prompt_cache"]
    # The repeat and the follow-up both found the first conversation's tokens saved, the
    # follow-up its answer's too.
    assert stats["hits"] >= 2
    assert stats["tokens_reused"] > 2 * 40
    assert 0 < stats["bytes"] <= 64 * 1024 * 1024
