"""The transformers engine on the bundled GGUF: OpenAI semantics, parity with llama.cpp, LoRA."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openclone.config import bundled_model_path
from openclone.engines.llamacpp import LlamaCppEngine
from openclone.engines.transformers_engine import TransformersEngine
from openclone.errors import ConfigError, ModelNotFound, UnsupportedParameter
from openclone.schema import ChatCompletion, ChatCompletionRequest, CompletionRequest

pytestmark = pytest.mark.slow

NAME = "smollm2"
# A prompt whose greedy continuation has no near-tie in its first tokens (see the parity test).
PROMPT = "Explain what a CPU does."


def request(model: str = NAME, **kw: Any) -> ChatCompletionRequest:
    args: dict[str, Any] = {"temperature": 0, "max_tokens": 8, **kw}
    return ChatCompletionRequest(
        model=model, messages=[{"role": "user", "content": PROMPT}], **args
    )


def chat(engine: Any, **kw: Any) -> ChatCompletion:
    result: ChatCompletion = asyncio.run(engine.chat(request(**kw)))
    return result


def text(engine: Any, **kw: Any) -> str:
    return chat(engine, **kw).choices[0].message.content or ""


@pytest.fixture(scope="module")
def threads() -> Iterator[int]:
    # One torch thread: test machines are shared, and two threads on two busy cores run
    # several times slower than one. The setting is process-wide, so it is put back.
    import torch

    before = torch.get_num_threads()
    yield 1
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def engine(threads: int) -> Iterator[TransformersEngine]:
    eng = TransformersEngine.from_config(NAME, {"n_threads": threads})
    yield eng
    asyncio.run(eng.close())


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory: pytest.TempPathFactory, threads: int) -> Path:
    """A real LoRA adapter for the bundled model, random so that it changes the output."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    gguf = bundled_model_path()
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    torch.manual_seed(0)
    # LoRA weights depend on the base's shapes only, so a randomly initialised base will do.
    base = AutoModelForCausalLM.from_config(config)
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    out = tmp_path_factory.mktemp("lora") / "rand"
    get_peft_model(base, lora).save_pretrained(out, save_embedding_layers=False)
    return out


@pytest.fixture(scope="module")
def adapted(lora_dir: Path, threads: int) -> Iterator[TransformersEngine]:
    params = {"adapters": {"rand": str(lora_dir)}, "n_threads": threads}
    eng = TransformersEngine.from_config(NAME, params)
    yield eng
    asyncio.run(eng.close())


def test_greedy_chat_returns_text_and_usage(engine: TransformersEngine) -> None:
    result = chat(engine)
    assert result.model == NAME
    assert result.choices[0].message.content
    assert result.choices[0].finish_reason == "length"
    assert result.usage.completion_tokens == 8
    assert result.usage.prompt_tokens > 10


def test_greedy_tokens_and_logprobs_match_llamacpp(engine: TransformersEngine) -> None:
    # transformers runs the dequantized weights in float32; llama.cpp multiplies Q4_1 by
    # 8-bit-quantized activations. Logits differ a little (mean KL ~0.005 nats), so greedy
    # outputs match wherever the top two tokens are not within ~0.1 nats of each other; on
    # "What is the capital of France?" they are ("The" -1.88 vs "L" -1.97) and the two
    # engines diverge at the first token. PROMPT has no such tie in its first 8 tokens.
    llama = LlamaCppEngine.from_config(NAME, {"n_ctx": 512, "n_parallel": 1, "n_threads": 1})
    try:
        theirs = asyncio.run(llama.chat(request(logprobs=True)))
        with pytest.raises(ModelNotFound):  # llama.cpp serves no adapters
            asyncio.run(llama.chat(request(f"{NAME}:rand")))
    finally:
        asyncio.run(llama.close())
    ours = chat(engine, logprobs=True, top_logprobs=3)
    a = ours.choices[0].logprobs.content  # type: ignore[union-attr]
    b = theirs.choices[0].logprobs.content  # type: ignore[union-attr]
    assert a and b
    assert [t.token for t in a] == [t.token for t in b]
    assert ours.choices[0].message.content == theirs.choices[0].message.content
    for x, y in zip(a, b, strict=True):
        assert x.logprob == pytest.approx(y.logprob, abs=0.2)
        assert len(x.top_logprobs) == 3
        assert x.top_logprobs[0].token == x.token  # greedy picks the most likely token
        assert bytes(x.bytes or []).decode() == x.token


def test_completion_with_logprobs(engine: TransformersEngine) -> None:
    req = CompletionRequest(
        model=NAME, prompt="The capital of France is", max_tokens=4, temperature=0, logprobs=2
    )
    result = asyncio.run(engine.complete(req))
    choice = result.choices[0]
    assert choice.text
    assert choice.logprobs is not None
    assert "".join(choice.logprobs.tokens) == choice.text
    assert all(len(top or {}) == 2 for top in choice.logprobs.top_logprobs)


def test_stream_concatenates_to_the_same_text(engine: TransformersEngine) -> None:
    async def collect() -> tuple[list[str], Any]:
        req = request(max_tokens=12, stream=True, stream_options={"include_usage": True})
        parts, usage = [], None
        async for chunk in engine.stream(req):
            usage = chunk.usage or usage
            parts += [c.delta.content for c in chunk.choices if c.delta.content]
        return parts, usage

    parts, usage = asyncio.run(collect())
    assert len(parts) > 1
    assert "".join(parts) == text(engine, max_tokens=12)
    assert usage.completion_tokens == 12


def test_same_seed_same_sample(engine: TransformersEngine) -> None:
    first = text(engine, temperature=1.0, seed=7, max_tokens=12)
    assert text(engine, temperature=1.0, seed=7, max_tokens=12) == first
    assert text(engine, temperature=1.0, seed=8, max_tokens=12) != first


def test_stop_string_cuts_the_text(engine: TransformersEngine) -> None:
    full = text(engine, max_tokens=12)
    stop = full[6:10]  # spans tokens of the greedy output
    result = chat(engine, max_tokens=12, stop=[stop])
    assert result.choices[0].message.content == full[: full.index(stop)]
    assert result.choices[0].finish_reason == "stop"


def test_cancelled_stream_frees_the_worker(engine: TransformersEngine) -> None:
    async def go() -> str:
        it = engine.stream(request(max_tokens=4000))
        async for chunk in it:
            if any(c.delta.content for c in chunk.choices):
                break
        await it.aclose()  # type: ignore[attr-defined]
        # Had the 4000-token job kept the worker, this would wait for minutes.
        result = await asyncio.wait_for(engine.chat(request(max_tokens=2)), timeout=60)
        return result.choices[0].message.content or ""

    assert asyncio.run(go())


def test_json_output_and_forced_tools_are_refused(engine: TransformersEngine) -> None:
    schema = {"name": "x", "schema": {"type": "object"}}
    with pytest.raises(UnsupportedParameter) as err:
        chat(engine, response_format={"type": "json_schema", "json_schema": schema})
    assert err.value.param == "response_format"
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    with pytest.raises(UnsupportedParameter):
        chat(engine, tools=[tool], tool_choice="required")


def test_adapter_changes_output_and_base_stays_the_same(
    engine: TransformersEngine, adapted: TransformersEngine
) -> None:
    base = text(engine)
    assert text(adapted) == base  # adapters disabled for the plain model name
    assert text(adapted, model=f"{NAME}:rand") != base
    assert text(adapted) == base  # and switching back leaves nothing behind
    assert adapted.describe()["adapters"] == ["rand"]


def test_unknown_adapter_is_model_not_found(
    engine: TransformersEngine, adapted: TransformersEngine
) -> None:
    with pytest.raises(ModelNotFound, match=r"no adapter 'nope' \(adapters: rand\)"):
        chat(adapted, model=f"{NAME}:nope")
    with pytest.raises(ModelNotFound, match="has no adapter 'rand'"):
        chat(engine, model=f"{NAME}:rand")


def test_load_adapter_while_serving(
    engine: TransformersEngine, adapted: TransformersEngine, lora_dir: Path
) -> None:
    base = text(engine)

    async def load_during_a_request() -> None:
        running = asyncio.ensure_future(engine.chat(request(max_tokens=16)))
        await asyncio.to_thread(engine.load_adapter, "late", str(lora_dir))
        await running

    asyncio.run(load_during_a_request())
    assert "late" in engine.adapter_names()
    # The same weights loaded at runtime give what the configured adapter gives.
    assert text(engine, model=f"{NAME}:late") == text(adapted, model=f"{NAME}:rand")
    assert text(engine) == base
    with pytest.raises(ConfigError, match="already loaded"):
        engine.load_adapter("late", str(lora_dir))
