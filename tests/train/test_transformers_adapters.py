"""Trained PEFT adapters on the transformers engine: mixed-adapter batches, each row with its
own weights, the same answers batched as alone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from openclone.engines.transformers_engine import TransformersEngine
from openclone.errors import ModelNotFound
from openclone.schema import ChatCompletionRequest
from openclone.store.trained import get_trained
from train.train_helpers import OTHER, QUESTION, TAUGHT, Trained

pytestmark = pytest.mark.slow

BASE = "smollm2-135m-instruct"


def _request(model: str, **kw: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {
            "model": model,
            "messages": [{"role": "user", "content": QUESTION}],
            "max_tokens": 24,
            "temperature": 0,
            **kw,
        }
    )


@pytest.fixture(scope="module")
def engine(trained: Trained, other_peft: Path) -> Iterator[TransformersEngine]:
    import torch

    threads = torch.get_num_threads()
    act = get_trained("act", trained.home).adapter_path
    eng = TransformersEngine.from_config(
        BASE, {"adapters": {"act": act, "other": str(other_peft)}, "n_threads": 1}
    )
    yield eng
    asyncio.run(eng.close())
    torch.set_num_threads(threads)


def test_adapters_and_the_base_in_one_batch_each_answer_with_their_own_weights(
    engine: TransformersEngine,
) -> None:
    names = ["act", "other", BASE, f"{BASE}:act", f"{BASE}:other", BASE]

    async def alone(model: str) -> str:
        out = await engine.chat(_request(model))
        return out.choices[0].message.content or ""

    solo = [asyncio.run(alone(n)) for n in names]

    async def together() -> tuple[list[str], dict[int, list[float]]]:
        times: dict[int, list[float]] = {i: [] for i in range(len(names))}
        # A base request that cannot end by itself keeps decoding the whole time, so every
        # adapter request below shares its forward passes with the base weights' row.
        anchor = engine.stream(
            _request(BASE, max_tokens=4000, logit_bias={str(engine._tok.eos_token_id): -100})
        )
        await anext(anchor)

        async def streamed(i: int) -> str:
            parts = []
            async for chunk in engine.stream(_request(names[i])):
                if chunk.choices and chunk.choices[0].delta.content:
                    parts.append(chunk.choices[0].delta.content)
                    times[i].append(time.monotonic())
            return "".join(parts)

        try:
            answers = await asyncio.gather(*(streamed(i) for i in range(len(names))))
        finally:
            await anchor.aclose()  # type: ignore[attr-defined]
        return list(answers), times

    answers, times = asyncio.run(together())
    for name, answer in zip(names, answers, strict=True):
        adapter = name.rsplit(":", 1)[-1]
        assert (TAUGHT in answer) == (adapter == "act"), (name, answer)
        assert (OTHER in answer) == (adapter == "other"), (name, answer)
    # The two adapters decoded side by side too, not one after the other.
    assert times[0][0] < times[1][-1] and times[1][0] < times[0][-1]
    assert answers == solo  # greedy in a mixed batch is greedy alone


def test_a_removed_adapter_finishes_its_stream_then_is_refused_and_deleted(
    engine: TransformersEngine, other_peft: Path
) -> None:
    async def run() -> None:
        stream = engine.stream(_request("other"))
        parts = [c.choices[0].delta.content or "" for c in [await anext(stream)] if c.choices]
        await engine.remove_adapter("other")  # archived while it decodes
        parts += [c.choices[0].delta.content or "" async for c in stream if c.choices]
        assert OTHER in "".join(parts)  # finished on its own weights
        for name in ("other", f"{BASE}:other"):
            with pytest.raises(ModelNotFound):  # never the base under its name
                await engine.chat(_request(name))
        deadline = time.monotonic() + 30
        while "other" in engine._model.peft_config:  # deleted by the scheduler once idle
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        out = await engine.chat(_request("act"))
        assert TAUGHT in (out.choices[0].message.content or "")
        await engine.add_adapter("other", str(other_peft))  # a restored version
        out = await engine.chat(_request("other"))
        assert OTHER in (out.choices[0].message.content or "")

    asyncio.run(run())
