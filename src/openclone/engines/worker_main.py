"""An engine worker process: one local engine (llama.cpp, transformers) behind a socket.

Started by :class:`~openclone.engines.supervised.SupervisedEngine` as
``python -m openclone.engines.worker_main FD``. The gateway sends what to load, the worker
answers READY with the engine's capabilities, then serves any number of concurrent
requests, each its own task, until SHUTDOWN or until the gateway's end of the socket
closes — a worker never outlives its gateway. Native crashes end this process only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import json
import logging
import os
import resource
import signal
import socket
import sys
from collections.abc import AsyncGenerator
from typing import Any

from pydantic import BaseModel, ValidationError

from openclone.engines.base import AdapterHost, Embedder, Engine
from openclone.engines.ipc import FrameTooLarge, Kind, error_payload, frame, read_frame
from openclone.errors import ConfigError, InvalidRequestError, UnsupportedParameter
from openclone.schema import ChatCompletionRequest, CompletionRequest, EmbeddingRequest

log = logging.getLogger("openclone.worker")

EXIT_CONFIG = 3  # the engine cannot be built from its configuration: restarting won't help
_GENERATING = (Kind.CHAT, Kind.STREAM, Kind.COMPLETE, Kind.STREAM_COMPLETE)
_DETAIL_EVERY = 0.25  # seconds between checks of describe() for /health


def _die_with_parent(gateway: int) -> None:
    """Ask Linux to SIGKILL this process when the gateway dies, even by ``kill -9``."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    # Compared with the gateway's own pid, not with 1: in a container the gateway is pid 1.
    if gateway and os.getppid() != gateway:  # it died before the line above
        os._exit(0)


def _limit_memory(mb: int | None) -> None:
    if mb:
        size = mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (size, size))


class _Worker:
    def __init__(self, engine: Engine, writer: asyncio.StreamWriter) -> None:
        self.engine = engine
        self.writer = writer
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.generating: set[int] = set()  # requests that move only as the engine steps
        self.adapting = 0  # adapter loads (ADD_ADAPTER) in flight
        self._detail = ""

    def send(self, kind: Kind, rid: int, payload: bytes = b"") -> None:
        self.writer.write(frame(kind, rid, payload))

    def detail(self) -> None:
        """Send describe() when it changed since the last time."""
        text = json.dumps(self.engine.describe(), default=str)
        if text != self._detail:
            self._detail = text
            self.send(Kind.DETAIL, 0, text.encode())

    async def tick(self) -> None:
        while True:
            await asyncio.sleep(_DETAIL_EVERY)
            self.detail()

    def pong(self) -> None:
        """Answer a PING from the event loop: a loop that cannot (a deadlock holding the
        GIL, a stopped process) is what the gateway's watchdog looks for; the engine's step
        count tells it whether requests in flight still move."""
        steps = None
        progress = getattr(self.engine, "progress", None)
        if callable(progress):
            with contextlib.suppress(Exception):  # a plugin's bad counter: liveness only
                steps = int(progress())
        # While an adapter loads, the steps may stand still without a hang.
        generating = 0 if self.adapting else len(self.generating)
        body = {"generating": generating, "progress": steps}
        self.send(Kind.PONG, 0, json.dumps(body).encode())

    def start(self, kind: Kind, rid: int, payload: bytes) -> None:
        task = self.tasks[rid] = asyncio.create_task(self._handle(kind, rid, payload))
        if kind in _GENERATING:
            self.generating.add(rid)

        def done(_: object) -> None:
            # Also when a CANCEL comes before the task ever ran (its finally never runs then).
            self.tasks.pop(rid, None)
            self.generating.discard(rid)

        task.add_done_callback(done)

    def cancel(self, rid: int) -> None:
        task = self.tasks.get(rid)
        if task is not None:
            task.cancel()

    async def _handle(self, kind: Kind, rid: int, payload: bytes) -> None:
        try:
            if kind == Kind.ADD_ADAPTER:
                body = json.loads(payload)
                if not isinstance(self.engine, AdapterHost):
                    raise ConfigError("this engine cannot load adapters")
                self.adapting += 1
                try:
                    await self.engine.add_adapter(body["name"], body["path"])
                finally:
                    self.adapting -= 1
                self.send(Kind.RESULT, rid, json.dumps(self.engine.adapter_names()).encode())
            elif kind == Kind.REMOVE_ADAPTER:
                body = json.loads(payload)
                if isinstance(self.engine, AdapterHost):
                    await self.engine.remove_adapter(body["name"])
                names = self.engine.adapter_names() if isinstance(self.engine, AdapterHost) else []
                self.send(Kind.RESULT, rid, json.dumps(names).encode())
            elif kind == Kind.EMBED:
                self.send(Kind.RESULT, rid, (await self._embed(payload)).model_dump_json().encode())
            elif kind in (Kind.CHAT, Kind.COMPLETE):
                req = _request(kind, payload)
                result: BaseModel
                if isinstance(req, ChatCompletionRequest):
                    result = await self.engine.chat(req)
                else:
                    result = await self.engine.complete(req)
                self.send(Kind.RESULT, rid, result.model_dump_json().encode())
            else:
                req = _request(kind, payload)
                it: AsyncGenerator[BaseModel, None] = (
                    self.engine.stream(req)
                    if isinstance(req, ChatCompletionRequest)
                    else self.engine.stream_complete(req)
                )
                try:
                    async for item in it:
                        self.send(Kind.ITEM, rid, item.model_dump_json().encode())
                        await self.writer.drain()
                finally:
                    await it.aclose()
                self.send(Kind.END, rid)
        except asyncio.CancelledError:
            pass  # the gateway asked; it expects no answer
        except BaseException as exc:  # every failure goes back to the gateway, typed
            self.send(Kind.ERROR, rid, error_payload(exc))
        finally:
            self.detail()

    async def _embed(self, payload: bytes) -> BaseModel:
        engine = self.engine
        if not (isinstance(engine, Embedder) and engine.capabilities.embeddings):
            raise UnsupportedParameter("this engine does not support embeddings", param="model")
        body = payload.partition(b"\n")[2]  # embeddings share no prompt cache: no scope
        try:
            req = EmbeddingRequest.model_validate_json(body)
        except ValidationError as exc:  # the gateway validated it: a bug, not the client
            raise InvalidRequestError(f"the worker could not read the request: {exc}") from exc
        return await engine.embed(req)


def _request(kind: Kind, payload: bytes) -> ChatCompletionRequest | CompletionRequest:
    scope_json, _, body = payload.partition(b"\n")
    cls = ChatCompletionRequest if kind in (Kind.CHAT, Kind.STREAM) else CompletionRequest
    try:
        req = cls.model_validate_json(body)
    except ValidationError as exc:  # the gateway validated it: this is a bug, not the client
        raise InvalidRequestError(f"the worker could not read the request: {exc}") from exc
    req.scope_cache(json.loads(scope_json))
    return req


def _build(spec: dict[str, Any]) -> Engine:
    from openclone.engines import create_engine

    return create_engine(spec["engine"], spec["model"], spec["params"], isolation="thread")


async def _serve(sock: socket.socket) -> int:
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=2**20)
    kind, _, payload = await read_frame(reader)
    if kind != Kind.SPEC:
        return 2
    spec = json.loads(payload)
    try:
        engine = await asyncio.to_thread(_build, spec)
    except BaseException as exc:
        writer.write(frame(Kind.FATAL, 0, error_payload(exc)))
        await writer.drain()
        return EXIT_CONFIG if isinstance(exc, ConfigError) else 1
    ready = {
        "capabilities": dataclasses.asdict(engine.capabilities),
        "adapters": engine.adapter_names() if isinstance(engine, AdapterHost) else [],
        "detail": engine.describe(),
        "pid": os.getpid(),
    }
    writer.write(frame(Kind.READY, 0, json.dumps(ready, default=str).encode()))
    worker = _Worker(engine, writer)
    ticker = asyncio.create_task(worker.tick())
    try:
        while True:
            try:
                kind, rid, payload = await read_frame(reader)
            except FrameTooLarge as exc:  # one request's problem, not the connection's
                worker.send(Kind.ERROR, exc.rid, error_payload(exc.error()))
                continue
            except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                break  # the gateway is gone (or speaks nonsense: the same to us)
            if kind == Kind.PING:
                worker.pong()
            elif kind == Kind.CANCEL:
                worker.cancel(rid)
            elif kind == Kind.SHUTDOWN:
                break
            else:
                worker.start(kind, rid, payload)
    finally:
        ticker.cancel()
        for task in list(worker.tasks.values()):
            task.cancel()
        await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
        await engine.close()
    return 0


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    fd = int(args[0])
    _die_with_parent(int(args[1]) if len(args) > 1 else 0)
    _limit_memory(int(os.environ.get("OPENCLONE_WORKER_MEMORY_MB", "0") or 0) or None)
    # Ctrl-C and a SIGTERM to the whole process group reach the gateway, which drains its
    # requests and then stops us; dying first would fail them and start new workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s worker: %(message)s")
    sock = socket.socket(fileno=fd)
    code = asyncio.run(_serve(sock))
    sys.stdout.flush()
    os._exit(code)  # skip interpreter teardown: native libraries have been closed already


if __name__ == "__main__":
    main()
