"""The capture hook sees every finished exchange, streamed ones assembled, and never
fails a request. The sink here is a plain list (the store's writer is the real one)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from openclone.config import ModelConfig, load_settings
from openclone.gateway.app import create_app
from openclone.store.exchange import Exchange

pytestmark = pytest.mark.slow


class ListSink:
    def __init__(self) -> None:
        self.items: list[Exchange] = []

    def submit(self, exchange: Exchange) -> None:
        self.items.append(exchange)


class BrokenSink:
    def submit(self, exchange: Exchange) -> None:
        raise RuntimeError("disk full")


async def _client(sink: object) -> AsyncIterator[httpx.AsyncClient]:
    settings = load_settings(models=[ModelConfig(name="m", params={"n_ctx": 512, "n_parallel": 2})])
    app = create_app(settings, capture=sink)  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield client


def test_exchanges_are_captured_streamed_or_not() -> None:
    sink = ListSink()
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 6,
        "temperature": 0,
    }

    async def main() -> tuple[httpx.Response, str, str]:
        async for client in _client(sink):
            plain = await client.post(
                "/v1/chat/completions",
                json={**body, "user": "alice"},
                headers={"X-OpenClone-Conversation": "conv-1", "X-OpenClone-Train": "false"},
            )
            streamed = await client.post("/v1/chat/completions", json={**body, "stream": True})
            return plain, streamed.headers["x-openclone-capture-id"], streamed.text
        raise AssertionError

    plain, stream_id, stream_text = asyncio.run(main())
    assert plain.status_code == 200
    first, second = sink.items
    assert first.id == plain.headers["x-openclone-capture-id"]
    assert first.user == "alice" and first.conversation == "conv-1" and first.train is False
    assert first.request["messages"][0]["content"] == "Hi"
    assert first.response is not None
    assert (
        first.response["choices"][0]["message"]["content"]
        == plain.json()["choices"][0]["message"]["content"]
    )
    assert first.replica == "m#0" and first.usage is not None and first.status == 200
    assert second.id == stream_id and second.stream and second.train is None
    assert second.response is not None
    assert (
        second.response["choices"][0]["message"]["content"]
        == first.response["choices"][0]["message"]["content"]
    )
    assert (
        second.usage is not None and second.usage.completion_tokens == first.usage.completion_tokens
    )
    assert "usage" not in stream_text  # the client did not ask for it


def test_a_failing_sink_never_fails_the_request() -> None:
    async def main() -> int:
        async for client in _client(BrokenSink()):
            r = await client.post(
                "/v1/chat/completions",
                json={
                    "model": "m",
                    "messages": [{"role": "user", "content": "Hi"}],
                    "max_tokens": 2,
                },
            )
            return r.status_code
        raise AssertionError

    assert asyncio.run(main()) == 200
