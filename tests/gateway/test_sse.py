"""``EventStream`` on a real uvicorn server: the bytes a client reads, and when it reads the
last event (only once the stream's cleanup has run)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from standins import serve_asgi
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from openclone.gateway.sse import Closing, EventStream


class App:
    def __init__(self) -> None:
        self.cleaned = 0
        self.app = Starlette(
            routes=[
                Route("/slow-cleanup", self.slow_cleanup),
                Route("/mixed", self.mixed),
                Route("/failing-cleanup", self.failing_cleanup),
                Route("/cleaned", self.count),
            ]
        )

    async def slow_cleanup(self, _: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            try:
                yield b"data: 1\n\n"
                yield Closing(b"data: [DONE]\n\n")
            finally:
                await asyncio.sleep(0.3)  # slow enough that a client would see [DONE] first
                self.cleaned += 1

        return EventStream(body())

    async def mixed(self, _: Request) -> Response:
        async def body() -> AsyncIterator[bytes | str]:
            yield Closing(b"a")  # not last after all: it still goes, in order
            yield "b"
            yield Closing(b"c")

        return EventStream(body())

    async def failing_cleanup(self, _: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            try:
                yield b"data: 1\n\n"
                yield Closing(b'data: {"error": "upstream failed"}\n\n')
            finally:
                raise RuntimeError("cleanup failed too")

        return EventStream(body())

    async def count(self, _: Request) -> Response:
        return JSONResponse(self.cleaned)


@pytest.fixture
def served() -> Iterator[tuple[App, str]]:
    app = App()
    with serve_asgi(app.app) as url:
        yield app, url


def test_the_last_event_arrives_after_the_streams_cleanup(served: tuple[App, str]) -> None:
    _, url = served
    seen = b""
    with httpx.stream("GET", url + "/slow-cleanup", timeout=10) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for piece in r.iter_raw():
            seen += piece
            if b"[DONE]" in seen:
                # The stream is over for this client: what its end does has been done.
                assert httpx.get(url + "/cleaned", timeout=10).json() == 1
                break
    assert seen == b"data: 1\n\ndata: [DONE]\n\n"


def test_every_event_is_sent_in_order(served: tuple[App, str]) -> None:
    _, url = served
    r = httpx.get(url + "/mixed", timeout=10)
    assert r.status_code == 200 and r.content == b"abc"


def test_the_last_event_is_sent_even_when_the_cleanup_fails(served: tuple[App, str]) -> None:
    _, url = served
    seen = b""
    with httpx.stream("GET", url + "/failing-cleanup", timeout=10) as r:
        try:
            for piece in r.iter_raw():
                seen += piece
        except httpx.RemoteProtocolError:
            pass  # the server ends the response abruptly after the error: it failed
    assert seen == b'data: 1\n\ndata: {"error": "upstream failed"}\n\n'
