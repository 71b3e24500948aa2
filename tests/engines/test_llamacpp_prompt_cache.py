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


def ask(engine: LlamaCppEngine, messages: list[dict[str, str]], scope: str | None = None) -> str:
    req = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": messages, "max_tokens": 16, "temperature": 0}
    )
    req.scope_cache(scope)
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


def test_one_tenant_never_reuses_what_another_evaluated() -> None:
    engine = LlamaCppEngine(
        "m", LlamaCppConfig(n_ctx=1024, n_parallel=2, prompt_cache_mb=64, n_threads=2)
    )
    first = [{"role": "user", "content": FIRST}]
    try:
        answer_a = ask(engine, first, scope="tenant-a")
        before = engine.describe()["prompt_tokens"]
        answer_b = ask(engine, first, scope="tenant-b")  # a slot and the cache hold it: unused
        after_b = engine.describe()["prompt_tokens"]
        ask(engine, [{"role": "user", "content": OTHER}], scope="tenant-c")
        ask(engine, first, scope="tenant-a")  # tenant a's own prefix: reused
        after_a = engine.describe()["prompt_tokens"]
    finally:
        asyncio.run(engine.close())

    assert answer_a == answer_b
    assert after_b["reused"] == before["reused"]
    assert after_b["evaluated"] - before["evaluated"] > 40
    assert after_a["reused"] - after_b["reused"] > 40
