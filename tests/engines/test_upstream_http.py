"""The upstream HTTP client's own parts: event-stream line splitting and proxy choice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from openclone.engines.upstream_http import EventLines, proxy_for


def lines_of(chunks: list[bytes]) -> list[bytes]:
    async def source() -> AsyncIterator[bytes]:
        for c in chunks:
            yield c

    async def collect() -> list[bytes]:
        return [line async for line in EventLines(source())]

    return asyncio.run(collect())


def test_lines_split_across_chunks_come_out_whole() -> None:
    body = b'data: {"a": 1}\n\ndata: {"b": 2}\n\ndata: [DONE]\n\n'
    expected = [b'data: {"a": 1}', b"", b'data: {"b": 2}', b"", b"data: [DONE]", b""]
    assert lines_of([body]) == expected
    assert lines_of([body[i : i + 1] for i in range(len(body))]) == expected  # byte by byte
    assert lines_of([body[:7], body[7:20], body[20:]]) == expected


def test_crlf_line_ends_and_a_last_line_without_newline() -> None:
    assert lines_of([b"data: x\r\n\r\ndata: y"]) == [b"data: x", b"", b"data: y"]


def test_a_line_far_longer_than_any_buffer_is_not_refused() -> None:
    long = b"data: " + b"x" * 300_000
    assert lines_of([long[:100_000], long[100_000:], b"\n"]) == [long]


def test_the_environment_proxy_is_used_unless_no_proxy_names_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    assert proxy_for("https://api.openai.com/v1") is None
    monkeypatch.setenv("HTTPS_PROXY", "proxy.corp:3128")
    monkeypatch.setenv("NO_PROXY", "gpu-1.internal,localhost")
    assert proxy_for("https://api.openai.com/v1") == "http://proxy.corp:3128"
    assert proxy_for("https://gpu-1.internal:8000/v1") is None
    assert proxy_for("http://api.openai.com/v1") is None  # no HTTP_PROXY for plain http
