"""The `openai` engine against a live upstream: answers, streams and connection reuse."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator

import pytest
from standins import serve_asgi
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from openclone.engines.openai_upstream import OpenAIConfig, OpenAIEngine
from openclone.errors import ContextLengthExceeded, EngineError
from openclone.schema import ChatCompletionRequest


class Upstream:
    """An OpenAI-shaped server that remembers which client connection each request used."""

    def __init__(self) -> None:
        self.peers: list[tuple[str, int]] = []
        self.bodies: list[dict[str, object]] = []
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])

    async def chat(self, request: Request) -> Response:
        client = request.client
        assert client is not None
        self.peers.append((client.host, client.port))
        body = json.loads(await request.body())
        self.bodies.append(body)
        if body["messages"][0]["content"] == "too long":
            error = {"message": "maximum context length is 8 tokens", "type": "invalid_request_error",
                     "param": "messages", "code": "context_length_exceeded"}  # fmt: skip
            return JSONResponse({"error": error}, status_code=400)
        base = {"id": "c1", "created": 0, "model": body["model"]}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "hello"}
            return JSONResponse(
                {**base, "object": "chat.completion", "choices": [
                    {"index": 0, "message": message, "finish_reason": "stop"}
                ]}
            )  # fmt: skip

        async def events() -> AsyncIterator[bytes]:
            for word in ("hel", "lo"):
                chunk = {**base, "object": "chat.completion.chunk", "choices": [
                    {"index": 0, "delta": {"content": word}, "finish_reason": None}
                ]}  # fmt: skip
                yield f"data: {json.dumps(chunk)}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")


@pytest.fixture
def upstream() -> Iterator[tuple[Upstream, str]]:
    up = Upstream()
    with serve_asgi(up.app) as url:
        yield up, f"{url}/v1"


def test_streams_and_answers_share_one_pooled_connection(upstream: tuple[Upstream, str]) -> None:
    up, url = upstream
    req = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    )

    async def run() -> list[str]:
        engine = OpenAIEngine("m", OpenAIConfig(base_url=url))
        texts = []
        try:
            for _ in range(3):
                parts = [c.choices[0].delta.content or "" async for c in engine.stream(req)]
                texts.append("".join(parts))
                texts.append((await engine.chat(req)).choices[0].message.content or "")
        finally:
            await engine.close()
        return texts

    assert asyncio.run(run()) == ["hello"] * 6
    # A stream read to its end hands its connection back: one TCP connection for all six.
    assert len(up.peers) == 6
    assert len(set(up.peers)) == 1


def test_upstream_errors_keep_their_type_and_message_streamed_or_not(
    upstream: tuple[Upstream, str],
) -> None:
    up, url = upstream
    req = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "too long"}], "user": "u1"}
    )

    async def run() -> list[BaseException]:
        engine = OpenAIEngine("m", OpenAIConfig(base_url=url, model="upstream-name"))
        errors: list[BaseException] = []
        try:
            for call in (engine.chat(req), anext(aiter(engine.stream(req)))):
                try:
                    await call
                except Exception as exc:
                    errors.append(exc)
        finally:
            await engine.close()
        return errors

    errors = asyncio.run(run())
    assert [type(e) for e in errors] == [ContextLengthExceeded, ContextLengthExceeded]
    assert all("maximum context length is 8 tokens" in str(e) for e in errors)
    # The upstream got its own model name, the stream flag, and the client's other fields.
    assert [b["model"] for b in up.bodies] == ["upstream-name", "upstream-name"]
    assert [b.get("stream") for b in up.bodies] == [None, True]
    assert all(b["user"] == "u1" for b in up.bodies)


def test_an_upstream_nobody_listens_on_is_a_retryable_engine_error() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    req = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    )

    async def run() -> EngineError:
        engine = OpenAIEngine("m", OpenAIConfig(base_url=f"http://127.0.0.1:{port}/v1"))
        try:
            with pytest.raises(EngineError) as caught:
                await engine.chat(req)
            assert not await engine.health()
        finally:
            await engine.close()
        return caught.value

    err = asyncio.run(run())
    assert err.retryable and err.status_code == 503
    assert "unreachable" in str(err)


def test_cache_salt_is_the_tenants_own_and_never_the_clients(
    upstream: tuple[Upstream, str],
) -> None:
    up, url = upstream

    def request(tenant: str | None) -> ChatCompletionRequest:
        req = ChatCompletionRequest.model_validate(
            {"model": "m", "messages": [{"role": "user", "content": "hi"}], "cache_salt": "x"}
        )
        req.scope_cache(tenant)
        return req

    async def run(salted: bool) -> None:
        engine = OpenAIEngine("m", OpenAIConfig(base_url=url, cache_salt=salted))
        try:
            for tenant in ("acme", "globex", "acme"):
                await engine.chat(request(tenant))
        finally:
            await engine.close()

    asyncio.run(run(salted=True))
    acme, globex, acme_again = (b["cache_salt"] for b in up.bodies)
    assert acme == acme_again and acme != globex
    assert "x" not in (acme, globex)  # a client cannot name a salt, its own or another's
    up.bodies.clear()
    asyncio.run(run(salted=False))  # off: the request goes as the client sent it
    assert [b["cache_salt"] for b in up.bodies] == ["x", "x", "x"]
