"""The wire between the gateway and an engine worker process: framed messages on a socket.

A frame is a 9-byte header (payload length, kind, request id) and a payload. Requests and
chunks travel as the same pydantic JSON the OpenAI API uses, so a chunk costs one
``model_dump_json`` in the worker and one ``model_validate_json`` in the gateway, and no
parameter can be lost on the way. Errors travel as OpenClone's own error fields and are
raised again, with their class, on the gateway's side.

Why a Unix socket pair and not shared memory or a pipe per direction: one full-duplex,
kernel-buffered channel carries every concurrent request of a replica (multiplexed by id),
its EOF tells either side at once that the other one died, and at ~200 tokens/s a frame
of a few hundred bytes costs microseconds, far below a decode step.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import struct
from enum import IntEnum
from typing import Any

from openclone import errors
from openclone.engines.base import Capabilities

__all__ = [
    "HEADER",
    "MAX_FRAME",
    "FrameTooLarge",
    "Kind",
    "capabilities_from",
    "error_from",
    "error_payload",
    "frame",
    "read_frame",
    "read_frame_sync",
]

HEADER = struct.Struct("!IBI")  # payload length, kind, request id
MAX_FRAME = 256 * 1024 * 1024  # a request holds at most a context of text; guard a bad peer


class Kind(IntEnum):
    # gateway -> worker
    SPEC = 1  # {"engine", "model", "params"}: what to load
    CHAT = 2  # payload: scope JSON, newline, request JSON
    STREAM = 3
    COMPLETE = 4
    STREAM_COMPLETE = 5
    CANCEL = 6  # the client went away: stop request ``id``
    ADD_ADAPTER = 7  # {"name", "path"}
    SHUTDOWN = 8
    EMBED = 9  # payload: scope JSON, newline, embedding request JSON
    REMOVE_ADAPTER = 10  # {"name"}
    PING = 11  # are you alive, and moving?
    # worker -> gateway
    READY = 20  # {"capabilities", "adapters", "detail", "pid"}
    FATAL = 21  # an error payload: the engine could not be built
    RESULT = 22  # the whole answer of a CHAT, COMPLETE, EMBED, ADD_ADAPTER or REMOVE_ADAPTER
    ITEM = 23  # one chunk of a stream
    END = 24  # the stream is complete
    ERROR = 25  # an error payload: request ``id`` failed
    DETAIL = 26  # a fresh describe() of the engine (sent when it changes)
    PONG = 27  # {"generating": requests in flight, "progress": the engine's step count or null}


def frame(kind: Kind, rid: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(len(payload), kind, rid) + payload


class FrameTooLarge(Exception):
    """A frame over :data:`MAX_FRAME`; its bytes were skipped, so the stream stays in step."""

    def __init__(self, rid: int, size: int) -> None:
        super().__init__(f"a message of {size} bytes is over the {MAX_FRAME}-byte limit")
        self.rid = rid

    def error(self) -> errors.APIError:
        err = errors.InvalidRequestError(f"the request is too large for the engine: {self}")
        err.status_code = 413
        return err


async def read_frame(reader: asyncio.StreamReader) -> tuple[Kind, int, bytes]:
    """The next frame; ``asyncio.IncompleteReadError`` when the peer is gone, ``ValueError``
    for an unknown kind, :class:`FrameTooLarge` for an oversized one."""
    n, kind, rid = HEADER.unpack(await reader.readexactly(HEADER.size))
    if n > MAX_FRAME:
        left = n
        while left:
            left -= len(await reader.readexactly(min(left, 1 << 20)))
        raise FrameTooLarge(rid, n)
    return Kind(kind), rid, await reader.readexactly(n) if n else b""


def read_frame_sync(sock: socket.socket) -> tuple[Kind, int, bytes]:
    """The blocking twin of :func:`read_frame`, for the start-up handshake."""
    n, kind, rid = HEADER.unpack(_recv_exactly(sock, HEADER.size))
    if n > MAX_FRAME:
        raise ConnectionError(f"frame of {n} bytes is over the limit")
    return Kind(kind), rid, _recv_exactly(sock, n) if n else b""


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        part = sock.recv(n - len(buf))
        if not part:
            raise EOFError("the worker closed its end")
        buf += part
    return bytes(buf)


def error_payload(exc: BaseException) -> bytes:
    """An exception as JSON: OpenClone errors keep their class and fields, others say what."""
    if isinstance(exc, errors.APIError):
        body: dict[str, Any] = {
            "class": type(exc).__name__,
            "message": exc.message,
            "param": exc.param,
            "code": exc.code,
            "status_code": exc.status_code,
        }
        if isinstance(exc, errors.EngineError):
            body["retryable"] = exc.retryable
    elif isinstance(exc, errors.ConfigError):
        body = {"class": "ConfigError", "message": str(exc)}
    else:
        body = {
            "class": "EngineError",
            "message": f"generation failed: {type(exc).__name__}: {exc}",
        }
    return json.dumps(body).encode()


def error_from(payload: bytes) -> errors.OpenCloneError:
    """The exception :func:`error_payload` described, ready to raise in the gateway."""
    body = json.loads(payload)
    name, message = body.get("class", "EngineError"), body.get("message", "engine error")
    if name == "ConfigError":
        return errors.ConfigError(message)
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, errors.APIError)):
        cls = errors.EngineError
    if issubclass(cls, errors.EngineError):
        exc: errors.APIError = cls(
            message,
            param=body.get("param"),
            code=body.get("code"),
            retryable=bool(body.get("retryable", False)),
            status_code=body.get("status_code"),
        )
    else:
        exc = cls(message, param=body.get("param"), code=body.get("code"))
        if body.get("status_code"):
            exc.status_code = int(body["status_code"])
    return exc


def capabilities_from(body: dict[str, Any]) -> Capabilities:
    known = {f.name for f in dataclasses.fields(Capabilities)}
    return Capabilities(**{k: v for k, v in body.items() if k in known})
