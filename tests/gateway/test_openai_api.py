"""The OpenAI API of a real server process, driven by the official openai client."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import openai
import pytest
from conftest import BUNDLED, Server
from openai import AsyncOpenAI, OpenAI

pytestmark = pytest.mark.slow

HELLO = [{"role": "user", "content": "Write one sentence about the sea."}]


@pytest.fixture(scope="module")
def client(server: Server) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


def test_chat_completion(client: OpenAI) -> None:
    out = client.chat.completions.create(
        model=BUNDLED, messages=HELLO, max_tokens=12, temperature=0
    )
    choice = out.choices[0]
    assert out.object == "chat.completion"
    assert out.model == BUNDLED
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert out.usage is not None and out.usage.completion_tokens <= 12
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens


def test_streaming_matches_non_streaming(client: OpenAI) -> None:
    whole = client.chat.completions.create(
        model=BUNDLED, messages=HELLO, max_tokens=16, temperature=0
    )
    chunks = list(
        client.chat.completions.create(
            model=BUNDLED,
            messages=HELLO,
            max_tokens=16,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[
        0
    ].finish_reason
    assert len({c.id for c in chunks}) == 1
    usage = chunks[-1]
    assert usage.choices == [] and usage.usage is not None
    assert usage.usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]


def test_stream_without_usage_has_no_usage_chunk(server: Server) -> None:
    body = {"model": BUNDLED, "messages": HELLO, "max_tokens": 4, "stream": True}
    with httpx.stream("POST", server.base_url + "/chat/completions", json=body, timeout=60) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert all("usage" not in json.loads(e) for e in events[:-1])


def test_completions(client: OpenAI) -> None:
    out = client.completions.create(
        model=BUNDLED, prompt="The capital of France is", max_tokens=5, temperature=0
    )
    assert out.object == "text_completion"
    assert out.choices[0].text
    streamed = client.completions.create(
        model=BUNDLED, prompt="The capital of France is", max_tokens=5, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == out.choices[0].text


def test_n_gives_distinct_choices(client: OpenAI) -> None:
    out = client.chat.completions.create(model=BUNDLED, messages=HELLO, max_tokens=8, n=2, seed=1)
    assert [c.index for c in out.choices] == [0, 1]
    assert all(c.message.content for c in out.choices)


def test_stop_sequence_cuts_output(client: OpenAI) -> None:
    free = client.chat.completions.create(
        model=BUNDLED, messages=HELLO, max_tokens=20, temperature=0
    )
    text = free.choices[0].message.content or ""
    words = text.split()
    assert len(words) >= 3, text
    stop = " " + words[2]
    cut = client.chat.completions.create(
        model=BUNDLED, messages=HELLO, max_tokens=20, temperature=0, stop=[stop]
    )
    assert cut.choices[0].message.content == text[: text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_seed_reproducible(client: OpenAI) -> None:
    def run(seed: int) -> str:
        out = client.chat.completions.create(
            model=BUNDLED, messages=HELLO, max_tokens=16, temperature=1.0, seed=seed
        )
        return out.choices[0].message.content or ""

    assert run(7) == run(7)
    assert len({run(s) for s in (1, 2, 3)}) > 1  # sampling really samples


def test_json_schema_output_validates(client: OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    out = client.chat.completions.create(
        model=BUNDLED,
        messages=[{"role": "user", "content": "Name a big city and its population as JSON."}],
        max_tokens=60,
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}},
    )
    data = json.loads(out.choices[0].message.content or "")
    assert set(data) == {"city", "population"}
    assert isinstance(data["city"], str) and isinstance(data["population"], int)


def test_json_object_output_parses(client: OpenAI) -> None:
    out = client.chat.completions.create(
        model=BUNDLED,
        messages=[{"role": "user", "content": "Describe a cat in JSON."}],
        max_tokens=80,
        temperature=0,
        response_format={"type": "json_object"},
    )
    if out.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(out.choices[0].message.content or ""), dict)


def test_forced_tool_call(client: OpenAI) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    out = client.chat.completions.create(
        model=BUNDLED,
        messages=[{"role": "user", "content": "What's the weather in Paris?"}],
        tools=tools,
        tool_choice="required",
        max_tokens=40,
        temperature=0,  # type: ignore[arg-type]
    )
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert isinstance(json.loads(call.function.arguments)["city"], str)  # type: ignore[union-attr]


def test_logprobs(client: OpenAI) -> None:
    out = client.chat.completions.create(
        model=BUNDLED, messages=HELLO, max_tokens=3, temperature=0, logprobs=True, top_logprobs=3
    )
    content = out.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content and len(content[0].top_logprobs) == 3
    # greedy: the chosen token is the most likely one
    assert content[0].logprob == pytest.approx(max(t.logprob for t in content[0].top_logprobs))


# ---- errors --------------------------------------------------------------------------


def test_unknown_model_is_404_with_the_likely_name(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        client.chat.completions.create(model="no-such-model", messages=HELLO)
    assert exc.value.code == "model_not_found"
    assert "Did you mean" not in str(exc.value)
    with pytest.raises(openai.NotFoundError) as exc:  # the name as Hugging Face writes it
        client.chat.completions.create(model="SmolLM2-135M-Instruct", messages=HELLO)
    assert f"Did you mean '{BUNDLED}'?" in str(exc.value)


def test_context_length_exceeded(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=BUNDLED, messages=HELLO, max_tokens=5000)
    assert exc.value.code == "context_length_exceeded"
    long = [{"role": "user", "content": "word " * 5000}]
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=BUNDLED, messages=long, max_tokens=5)
    assert exc.value.code == "context_length_exceeded"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (json.dumps({"model": BUNDLED}).encode(), "messages"),
        (json.dumps({"model": BUNDLED, "messages": []}).encode(), "messages"),
        (
            json.dumps({"model": BUNDLED, "messages": HELLO, "temperature": 7}).encode(),
            "temperature",
        ),
        (
            json.dumps(
                {"model": BUNDLED, "messages": [{"role": "wizard", "content": "x"}]}
            ).encode(),
            "messages",
        ),
        (json.dumps({"model": BUNDLED, "messages": HELLO, "n": "many"}).encode(), "n"),
        (
            json.dumps(
                {"model": BUNDLED, "messages": HELLO, "stop": ["a", "b", "c", "d", "e"]}
            ).encode(),
            "stop",
        ),
        (
            json.dumps(
                {"model": BUNDLED, "messages": HELLO, "response_format": {"type": "json_schema"}}
            ).encode(),
            "response_format",
        ),
    ],
)
def test_malformed_requests_are_400(server: Server, body: bytes, param: str | None) -> None:
    r = httpx.post(
        server.base_url + "/chat/completions",
        content=body,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert err["message"]
    assert err["param"] == param


def test_what_the_engine_cannot_do_is_400(client: OpenAI) -> None:
    image = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        }
    ]
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=BUNDLED, messages=image)  # type: ignore[arg-type]
    assert exc.value.code == "unsupported_parameter"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=BUNDLED, messages=HELLO, logit_bias={"50": 10})


def test_unknown_route_is_openai_shaped_404(server: Server) -> None:
    r = httpx.get(server.url + "/v1/nothing-here", timeout=10)
    assert r.status_code == 404
    assert r.json()["error"]["message"]


# ---- load, disconnects, failover -----------------------------------------------------------


def test_sixteen_concurrent_streams_complete(server: Server) -> None:
    async def one(client: AsyncOpenAI, i: int) -> tuple[str, str | None]:
        stream = await client.chat.completions.create(
            model=BUNDLED,
            messages=[{"role": "user", "content": f"Count to {i + 3}."}],
            max_tokens=8,
            temperature=0,
            stream=True,
        )
        parts, finish = [], None
        async for chunk in stream:
            if chunk.choices:
                parts.append(chunk.choices[0].delta.content or "")
                finish = chunk.choices[0].finish_reason or finish
        return "".join(parts), finish

    async def main() -> list[tuple[str, str | None]]:
        async with AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
            return await asyncio.gather(*(one(client, i) for i in range(16)))

    results = asyncio.run(main())
    assert len(results) == 16
    assert all(text and finish in ("stop", "length") for text, finish in results)


def _replica(server: Server, model: str, index: int) -> dict:  # type: ignore[type-arg]
    return server.health()["models"][model]["replicas"][index]


def test_client_disconnect_frees_the_slot(server: Server) -> None:
    body = {
        "model": BUNDLED,
        "messages": HELLO,
        "max_tokens": 3500,
        "temperature": 1.0,
        "stream": True,
        "seed": 3,
    }
    with httpx.stream("POST", server.base_url + "/chat/completions", json=body, timeout=60) as r:
        lines = r.iter_lines()
        for _ in range(3):
            next(lines)  # generation is under way
    # Without cancellation the worker would run for 3,500 tokens (tens of seconds).
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        rep = _replica(server, BUNDLED, 0)
        if rep["in_flight"] == 0 and not rep["detail"]["busy"]:
            break
        time.sleep(0.2)
    assert rep["in_flight"] == 0 and not rep["detail"]["busy"], rep
    metrics = httpx.get(server.url + "/metrics", timeout=10).text
    assert f'openclone_client_disconnects_total{{model="{BUNDLED}"}}' in metrics
    # and the server still serves
    ok = httpx.post(
        server.base_url + "/chat/completions",
        json={"model": BUNDLED, "messages": HELLO, "max_tokens": 2},
        timeout=60,
    )
    assert ok.status_code == 200


def test_dead_replica_is_skipped(server: Server, client: OpenAI) -> None:
    for _ in range(4):
        out = client.chat.completions.create(
            model="failover", messages=HELLO, max_tokens=4, temperature=0
        )
        assert out.model == "failover"
        assert out.choices[0].message.content
    stream = client.chat.completions.create(
        model="failover", messages=HELLO, max_tokens=4, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    dead, live = _replica(server, "failover", 0), _replica(server, "failover", 1)
    assert dead["healthy"] is False and dead["last_error"]
    assert live["healthy"] is True and live["served"] >= 5
    models = {m.id: m for m in client.models.list().data}
    assert set(models) == {BUNDLED, "failover"}
    replicas = models["failover"].model_extra["replicas"]  # type: ignore[index]
    assert [r["healthy"] for r in replicas] == [False, True]
    assert server.health()["status"] == "ok"  # the model still has a healthy replica


def test_metrics_exposition(server: Server, client: OpenAI) -> None:
    client.chat.completions.create(model=BUNDLED, messages=HELLO, max_tokens=2)
    text = httpx.get(server.url + "/metrics", timeout=10).text
    assert f'openclone_requests_total{{endpoint="chat",model="{BUNDLED}",status="200"}}' in text
    assert "openclone_replica_up" in text
    assert f'openclone_tokens_total{{kind="completion",model="{BUNDLED}"}}' in text
