"""The transformers engine on the bundled GGUF: OpenAI semantics, parity with llama.cpp, LoRA,
continuous batching."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openclone.config import bundled_model_path
from openclone.engines.llamacpp import LlamaCppEngine
from openclone.engines.transformers_engine import TransformersEngine
from openclone.errors import ConfigError, ModelNotFound, RateLimited, UnsupportedParameter
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


def test_base_and_adapter_rows_in_one_batch_match_their_answers_alone(
    adapted: TransformersEngine,
) -> None:
    models = [NAME, f"{NAME}:rand"]
    alone = [text(adapted, model=m, max_tokens=12) for m in models]

    async def together() -> list[ChatCompletion]:
        reqs = [request(m, max_tokens=12) for m in models * 2]
        return list(await asyncio.gather(*(adapted.chat(r) for r in reqs)))

    assert [r.choices[0].message.content for r in asyncio.run(together())] == alone * 2
    assert alone[0] != alone[1]


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


# ---- continuous batching -----------------------------------------------------------------

# Prompts of different lengths, so that rows joining a batch pad it or are padded; the first,
# third and fifth answers run past 24 tokens.
PROMPTS = [
    "Explain what a CPU does.",
    "Name three colors.",
    "Write a short poem about the sea, the wind and a small boat coming home at night.",
    "What is 2 + 2?",
    "How do airplanes fly?",
]


def ask(prompt: str, **kw: Any) -> ChatCompletionRequest:
    args: dict[str, Any] = {"temperature": 0, "max_tokens": 24, **kw}
    return ChatCompletionRequest(model=NAME, messages=[{"role": "user", "content": prompt}], **args)


def text_of(result: ChatCompletion) -> str:
    return result.choices[0].message.content or ""


async def streamed(
    engine: TransformersEngine,
    req: ChatCompletionRequest,
    log: list[tuple[int, float]],
    me: int,
    started: asyncio.Event | None = None,
) -> str:
    """The streamed text; appends (me, time) to ``log`` for every content chunk."""
    parts = []
    async for chunk in engine.stream(req):
        for c in chunk.choices:
            if c.delta.content:
                parts.append(c.delta.content)
                log.append((me, time.monotonic()))
                if started is not None:
                    started.set()
    return "".join(parts)


def idle(engine: TransformersEngine) -> bool:
    """Whether the batch empties within seconds (rows leave just after their last event)."""
    for _ in range(100):
        if engine.load() == {"busy": False, "active": 0, "queued": 0}:
            return True
        time.sleep(0.05)
    return False


def test_batched_greedy_equals_greedy_alone(engine: TransformersEngine) -> None:
    alone = [text_of(asyncio.run(engine.chat(ask(p)))) for p in PROMPTS]

    async def together() -> tuple[list[str], list[tuple[int, float]]]:
        log: list[tuple[int, float]] = []
        # The first request is decoding when the others join it at a step boundary.
        started = asyncio.Event()
        first = asyncio.ensure_future(
            streamed(engine, ask(PROMPTS[0], max_tokens=48), log, 0, started)
        )
        await started.wait()
        rest = [streamed(engine, ask(p), log, i) for i, p in enumerate(PROMPTS[1:], 1)]
        return list(await asyncio.gather(first, *rest)), log

    texts, log = asyncio.run(together())
    # Decoded in the same steps: every other request streamed while the first one still did.
    last_of_first = max(t for me, t in log if me == 0)
    assert all(min(t for me, t in log if me == i) < last_of_first for i in range(1, len(PROMPTS)))
    assert texts[0].startswith(alone[0])  # it asked for more tokens
    assert texts[1:] == alone[1:]
    assert idle(engine)


def test_each_row_keeps_its_own_sampling(engine: TransformersEngine) -> None:
    """Seeds, penalties, logit_bias, stop strings and logprobs are per sequence in a batch."""
    reqs = [
        ask(PROMPTS[0], temperature=1.0, seed=11, top_p=0.9),
        ask(PROMPTS[1], frequency_penalty=1.5, presence_penalty=0.5),
        ask(PROMPTS[3], logit_bias={"17": 100}, max_tokens=3),  # token 17 wins every time
        ask(PROMPTS[0], logprobs=True, top_logprobs=2, max_tokens=6),
        ask(PROMPTS[0], stop=["computer"]),
    ]
    alone = [asyncio.run(engine.chat(r)) for r in reqs]

    async def together() -> list[ChatCompletion]:
        return list(await asyncio.gather(*(engine.chat(r) for r in reqs)))

    batched = asyncio.run(together())
    assert [text_of(b) for b in batched] == [text_of(a) for a in alone]
    assert text_of(batched[2]) == engine._tok.decode([17] * 3)
    lps = batched[3].choices[0].logprobs.content  # type: ignore[union-attr]
    solo_lps = alone[3].choices[0].logprobs.content  # type: ignore[union-attr]
    assert lps and solo_lps and [t.token for t in lps] == [t.token for t in solo_lps]
    for x, y in zip(lps, solo_lps, strict=True):
        assert x.logprob == pytest.approx(y.logprob, abs=1e-3)
        assert len(x.top_logprobs) == 2
    assert batched[4].choices[0].finish_reason == "stop"
    assert "computer" not in text_of(batched[4])


def test_cancelling_one_stream_leaves_the_others_intact(engine: TransformersEngine) -> None:
    stay = [PROMPTS[0], PROMPTS[2], PROMPTS[4]]  # answers longer than 24 tokens
    alone = [text_of(asyncio.run(engine.chat(ask(p)))) for p in stay]
    never_ends = {str(engine._tok.eos_token_id): -100}  # the leaver cannot finish by itself

    async def go() -> list[str]:
        log: list[tuple[int, float]] = []
        events = [asyncio.Event() for _ in stay]

        async def leaves() -> str:
            got = []
            it = engine.stream(ask(PROMPTS[1], max_tokens=4000, logit_bias=never_ends))
            async for chunk in it:
                got += [c.delta.content for c in chunk.choices if c.delta.content]
                if all(e.is_set() for e in events):
                    break  # leave mid-batch: every other request is decoding now
            await it.aclose()  # type: ignore[attr-defined]
            return "".join(got)

        staying = [streamed(engine, ask(p), log, i, events[i]) for i, p in enumerate(stay)]
        left, *texts = await asyncio.gather(leaves(), *staying)
        assert left
        return texts

    assert asyncio.run(go()) == alone
    assert idle(engine)  # the scheduler dropped the cancelled row at its next step


def test_a_full_queue_is_rate_limited(threads: int) -> None:
    small = TransformersEngine.from_config(
        NAME, {"n_threads": threads, "max_batch": 1, "max_queue": 1, "n_ctx": 512}
    )

    async def go() -> str:
        running = small.stream(ask(PROMPTS[0], max_tokens=400))
        await anext(running)  # in the batch (of one) now
        waiting = asyncio.ensure_future(small.chat(ask(PROMPTS[3], max_tokens=2)))
        for _ in range(1000):
            if small.load()["queued"]:
                break
            await asyncio.sleep(0.01)
        with pytest.raises(RateLimited, match="1 requests waiting"):
            await small.chat(ask(PROMPTS[3], max_tokens=2))
        await running.aclose()  # type: ignore[attr-defined]
        return text_of(await asyncio.wait_for(waiting, timeout=60))

    try:
        assert asyncio.run(go())
        assert small.describe()["max_batch"] == 1
    finally:
        asyncio.run(small.close())


def test_a_sliding_window_model_is_served_one_request_at_a_time(
    tmp_path: Path, threads: int
) -> None:
    """Its cache keeps a window, which left padding would shift: it gets no padded batch."""
    from transformers import AutoTokenizer, MistralConfig, MistralForCausalLM

    gguf = bundled_model_path()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    config = MistralConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, sliding_window=16,
    )  # fmt: skip
    MistralForCausalLM(config).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    eng = TransformersEngine.from_config(NAME, {"model_path": str(tmp_path), "n_threads": threads})

    async def go() -> list[ChatCompletion]:
        reqs = [ask(PROMPTS[i], max_tokens=40) for i in (0, 1)]  # past the 16-token window
        return list(await asyncio.gather(*(eng.chat(r) for r in reqs)))

    try:
        alone = [asyncio.run(eng.chat(ask(PROMPTS[i], max_tokens=40))) for i in (0, 1)]
        assert all(a.usage.completion_tokens > 16 for a in alone)
        assert [text_of(r) for r in asyncio.run(go())] == [text_of(a) for a in alone]
        assert eng.describe()["max_batch"] == 1
    finally:
        asyncio.run(eng.close())
