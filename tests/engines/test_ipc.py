"""The gateway-worker wire: frames, errors carried with their class, oversized messages."""

from __future__ import annotations

import asyncio

import pytest

from openclone.engines import ipc
from openclone.errors import ContextLengthExceeded, EngineError, RateLimited


def _reader(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


def test_an_oversized_frame_fails_its_request_and_the_stream_stays_in_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ipc, "MAX_FRAME", 16)

    async def read() -> list[object]:
        reader = _reader(
            ipc.frame(ipc.Kind.CHAT, 7, b"x" * 100) + ipc.frame(ipc.Kind.CANCEL, 8, b"ok")
        )
        got: list[object] = []
        with pytest.raises(ipc.FrameTooLarge) as too_large:
            await ipc.read_frame(reader)
        got.append(too_large.value.rid)
        got.append(await ipc.read_frame(reader))
        with pytest.raises(asyncio.IncompleteReadError):
            await ipc.read_frame(reader)
        return got

    rid, after = asyncio.run(read())
    assert rid == 7
    assert after == (ipc.Kind.CANCEL, 8, b"ok")
    assert ipc.FrameTooLarge(7, 100).error().status_code == 413


def test_errors_cross_the_wire_with_their_class_and_fields() -> None:
    ctx = ipc.error_from(ipc.error_payload(ContextLengthExceeded("too long", param="messages")))
    assert isinstance(ctx, ContextLengthExceeded)
    assert (ctx.param, ctx.code, ctx.status_code) == ("messages", "context_length_exceeded", 400)
    busy = ipc.error_from(ipc.error_payload(RateLimited("queue full")))
    assert isinstance(busy, RateLimited) and busy.status_code == 429
    gone = ipc.error_from(ipc.error_payload(EngineError("x", retryable=True, status_code=503)))
    assert isinstance(gone, EngineError) and gone.retryable and gone.status_code == 503
    odd = ipc.error_from(ipc.error_payload(KeyError("boom")))
    assert isinstance(odd, EngineError) and "KeyError" in odd.message
