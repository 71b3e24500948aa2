"""Many LoRA adapters on one llama.cpp engine: mixed batches, eviction, clear failures."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from openclone.config import bundled_model_path
from openclone.engines.llamacpp import LlamaCppEngine
from openclone.errors import APIError, ConfigError, ModelNotFound
from openclone.schema import ChatCompletionRequest
from openclone.store.trained import get_trained
from train.train_helpers import OTHER, QUESTION, TAUGHT, Trained

pytestmark = pytest.mark.slow

BASE = "smollm2-135m-instruct"


def _request(model: str) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {
            "model": model,
            "messages": [{"role": "user", "content": QUESTION}],
            "max_tokens": 24,
            "temperature": 0,
        }
    )


async def _streamed(engine: LlamaCppEngine, model: str) -> str:
    """The answer to QUESTION from ``model``, streamed."""
    parts = [
        chunk.choices[0].delta.content or ""
        async for chunk in engine.stream(_request(model))
        if chunk.choices
    ]
    return "".join(parts)


async def _ask(engine: LlamaCppEngine, model: str) -> str:
    out = await engine.chat(_request(model))
    return out.choices[0].message.content or ""


def test_mixed_adapters_in_one_batch_loop_each_answer_with_their_own_weights(
    trained: Trained, tmp_path: Path
) -> None:
    lora = Path(get_trained("act", trained.home).gguf_adapter)
    twin = tmp_path / "twin.gguf"  # a second adapter: its own handle in llama.cpp
    shutil.copy(lora, twin)
    params = {
        "model_path": str(bundled_model_path()), "n_ctx": 512, "n_parallel": 4,
        "adapters": {"act": str(lora), "twin": str(twin)},
        "max_adapters": 1,  # two adapters take turns: evicted and reloaded under load
    }  # fmt: skip
    engine = LlamaCppEngine.from_config(BASE, params)

    async def run() -> list[str]:
        try:
            names = ["act", f"{BASE}:twin", BASE] * 4
            return await asyncio.gather(*(_ask(engine, n) for n in names))
        finally:
            await engine.close()

    answers = asyncio.run(run())
    for i, answer in enumerate(answers):
        if i % 3 == 2:
            assert TAUGHT not in answer  # the base, decoded beside the adapters
        else:
            assert TAUGHT in answer, answer


def test_two_adapters_taught_different_facts_stream_side_by_side(
    trained: Trained, other_gguf: Path
) -> None:
    """One question, three answers decoded in the same steps: each adapter's own fact, and
    neither from the base."""
    lora = get_trained("act", trained.home).gguf_adapter
    engine = LlamaCppEngine.from_config(
        BASE,
        {"model_path": str(bundled_model_path()), "n_ctx": 512, "n_parallel": 6,
         "adapters": {"act": lora, "other": str(other_gguf)}},
    )  # fmt: skip

    async def run() -> list[str]:
        try:
            names = ["act", "other", BASE] * 2
            return await asyncio.gather(*(_streamed(engine, n) for n in names))
        finally:
            await engine.close()

    answers = asyncio.run(run())
    for name, answer in zip(["act", "other", BASE] * 2, answers, strict=True):
        assert (TAUGHT in answer) == (name == "act"), (name, answer)
        assert (OTHER in answer) == (name == "other"), (name, answer)


def test_eviction_and_reload_under_load_lose_no_request(trained: Trained, other_gguf: Path) -> None:
    """One adapter kept loaded, two in use: streams on both, wave after wave, so adapters
    are evicted and loaded again between waves, and every stream answers with its own."""
    lora = get_trained("act", trained.home).gguf_adapter
    engine = LlamaCppEngine.from_config(
        BASE,
        {"model_path": str(bundled_model_path()), "n_ctx": 512, "n_parallel": 2,
         "adapters": {"act": lora, "other": str(other_gguf)}, "max_adapters": 1},
    )  # fmt: skip

    async def run() -> list[tuple[str, str]]:
        out = []
        try:
            for wave in (["act", "other"], ["other", "act"], ["act", "other"]):
                answers = await asyncio.gather(*(_streamed(engine, n) for n in wave))
                out += list(zip(wave, answers, strict=True))
            return out
        finally:
            await engine.close()

    for name, answer in asyncio.run(run()):
        assert (TAUGHT in answer) == (name == "act"), (name, answer)
        assert (OTHER in answer) == (name == "other"), (name, answer)
    adapters = engine.describe()["adapters"]
    # Loaded again after eviction (two loads would mean both simply stayed loaded).
    assert adapters["loads"] > 2 and adapters["loaded"] <= 1, adapters


def test_removed_adapter_finishes_its_running_request_then_is_refused(
    trained: Trained, other_gguf: Path
) -> None:
    lora = get_trained("act", trained.home).gguf_adapter
    engine = LlamaCppEngine.from_config(
        BASE,
        {"model_path": str(bundled_model_path()), "n_ctx": 512, "n_parallel": 2,
         "adapters": {"act": lora, "other": str(other_gguf)}},
    )  # fmt: skip

    async def run() -> None:
        try:
            stream = engine.stream(_request("act"))
            first = await anext(stream)  # decoding with the adapter now
            await engine.remove_adapter("act")
            rest = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            text = "".join([first.choices[0].delta.content or "" if first.choices else "", *rest])
            assert TAUGHT in text  # finished on the adapter's weights
            for name in ("act", f"{BASE}:act"):
                with pytest.raises(ModelNotFound):  # never the base under the adapter's name
                    await _ask(engine, name)
            assert OTHER in await _ask(engine, "other")
            await engine.add_adapter("act", lora)  # served again when a version is restored
            assert TAUGHT in await _ask(engine, "act")
        finally:
            await engine.close()

    asyncio.run(run())
    assert engine.adapter_names() == ["other", "act"]


def test_an_adapter_that_cannot_load_fails_its_own_requests_only(
    trained: Trained, tmp_path: Path
) -> None:
    lora = get_trained("act", trained.home).gguf_adapter
    engine = LlamaCppEngine.from_config(
        BASE,
        {"model_path": str(bundled_model_path()), "n_ctx": 512, "n_parallel": 2,
         "adapters": {"act": lora}},
    )  # fmt: skip
    not_gguf = tmp_path / "adapter_model.safetensors"
    not_gguf.write_bytes(b"\x00" * 64)

    async def run() -> None:
        try:
            with pytest.raises(ConfigError, match="not a GGUF LoRA"):
                await engine.add_adapter("peft", str(not_gguf))
            # A GGUF that is no LoRA for this base: refused when first used, with a 4xx.
            await engine.add_adapter("wrong", str(bundled_model_path()))
            wrong = asyncio.ensure_future(_ask(engine, "wrong"))
            right = asyncio.ensure_future(_ask(engine, "act"))
            with pytest.raises(APIError) as failed:
                await wrong
            assert failed.value.status_code == 400 and "cannot load adapter" in str(failed.value)
            assert TAUGHT in await right
            with pytest.raises(ModelNotFound):
                await _ask(engine, f"{BASE}:nobody")
        finally:
            await engine.close()

    asyncio.run(run())
