"""A local engine in a supervised worker process, so a native crash costs one replica.

:class:`SupervisedEngine` implements the :class:`~openclone.engines.base.Engine` contract in
the gateway by forwarding every call to a worker process
(:mod:`openclone.engines.worker_main`) over a socket pair (:mod:`openclone.engines.ipc`).
The gateway never loads model code itself. When the worker dies — a segfault in a
kernel, an abort, the OOM killer, ``kill -9`` — the socket closes at once and:

* requests that had not received a byte fail with a retryable ``EngineError`` (503
  ``engine_unavailable``), so the router retries them on another replica, or answers 503
  with ``Retry-After`` when there is none;
* streams already under way end with an OpenAI-shaped error event;
* the worker is started again after a backoff (0.5 s, doubling to 30 s; back to 0.5 s once
  a worker has stayed up for a minute), and the restart count and the last exit reason
  show in ``describe()`` — hence ``/health``, ``/v1/models`` and ``/metrics``.

A worker that hangs without dying is killed and then handled the same way: the supervisor
pings it every second, and one that answers nothing for ``hang_timeout`` seconds (its event
loop stuck: a deadlock holding the GIL, a stopped process), or that has requests to
generate while its engine's step count stands still that long (a native deadlock with the
GIL released), gets SIGKILL (see :class:`Liveness`).

A worker whose engine cannot be built from its configuration (a missing file, a bad
parameter) stops the server at start-up with that ``ConfigError``, as an in-process engine
would; anything else at start-up is a crash like any other and is retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

from openclone.engines.base import Capabilities
from openclone.engines.ipc import (
    MAX_FRAME,
    FrameTooLarge,
    Kind,
    capabilities_from,
    error_from,
    error_payload,
    frame,
    read_frame,
    read_frame_sync,
)
from openclone.errors import ConfigError, EngineError, OpenCloneError
from openclone.schema import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    EmbeddingList,
    EmbeddingRequest,
)

__all__ = ["Liveness", "SupervisedEngine", "WorkerOptions", "exit_reason"]

log = logging.getLogger("openclone.supervisor")
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class WorkerOptions:
    start_timeout: float = 600.0  # seconds to load the model before the start counts as failed
    backoff_first: float = 0.5
    backoff_max: float = 30.0
    stable_after: float = 60.0  # a worker up this long resets the backoff
    memory_mb: int | None = None  # address-space cap (RLIMIT_AS): an OOM ends the worker only
    hang_timeout: float = 60.0  # seconds silent, or generating without a step: killed (0: never)


class _WorkerDied(Exception):
    pass


_PING_EVERY = 1.0  # seconds (or a quarter of a shorter hang_timeout)


@dataclass
class Liveness:
    """What the watchdog knows of one worker: when anything was last heard from it, and,
    from its PONGs, whether it has requests to generate and when its engine's step count
    last moved (or it had nothing to generate). Monotonic seconds."""

    heard: float
    moved: float
    generating: bool = False
    progress: int | None = None

    def pong(self, payload: bytes, now: float) -> None:
        try:
            body = json.loads(payload)
            generating, progress = int(body.get("generating") or 0) > 0, body.get("progress")
        except (ValueError, TypeError, AttributeError):
            return
        if not generating or progress is None or progress != self.progress:
            self.moved = now  # idle, moving, or an engine that counts no steps
        self.generating, self.progress = generating, progress

    def hung(self, now: float, timeout: float) -> str | None:
        """Why the worker counts as hung (None: it does not): nothing heard for more than
        ``timeout`` seconds, or requests to generate and no engine step for that long."""
        if timeout <= 0:
            return None
        # The same words each time (the timeout, not the seconds measured): the reason is a
        # label of /metrics' last-exit series.
        if now - self.heard > timeout:
            return f"answered nothing for over {timeout:g} s (hung) and was killed"
        if self.generating and now - self.moved > timeout:
            return f"made no progress on its requests for over {timeout:g} s (hung) and was killed"
        return None


@dataclass
class _Pending:
    events: asyncio.Queue[tuple[Kind, bytes]] = field(default_factory=asyncio.Queue)
    started: bool = False  # a chunk has been handed on: the request can no longer move
    died: bool = False  # its worker died (or was killed as hung) while it held it


class _Conn:
    """One incarnation of the worker: its process and its end of the socket."""

    def __init__(self, proc: subprocess.Popen[bytes], sock: socket.socket, ready: dict[str, Any]):
        self.proc = proc
        self.sock = sock
        self.ready = ready
        self.started = time.monotonic()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.live = Liveness(self.started, self.started)
        self.hung: str | None = None  # why the watchdog killed it


class SupervisedEngine:
    """Engine contract in the gateway; the engine itself runs in a worker process."""

    def __init__(
        self, engine: str, model_name: str, params: dict[str, Any], options: WorkerOptions
    ) -> None:
        self.engine_name = engine
        self.model_name = model_name
        self.params = params
        self.options = options
        self.capabilities = Capabilities()
        self._adapters: list[str] = []
        self._detail: dict[str, Any] = {}
        self._conn: _Conn | None = None
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._restarts = 0
        self._last_exit: dict[str, Any] | None = None
        self._state = "starting"
        self._next_start = 0.0
        self._backoff = options.backoff_first
        self._closed = False
        self._supervisor: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._starting: subprocess.Popen[bytes] | None = None  # a worker not yet READY
        try:
            self._accept(self._spawn())
            self._starting = None
        except ConfigError:
            raise
        except _WorkerDied as exc:
            # Not the configuration's fault: the supervisor retries with backoff once the
            # gateway's event loop runs, and requests meanwhile get a 503.
            self._record_exit(str(exc))
            self._state = "restarting"
            self._next_start = time.monotonic() + self._backoff

    @classmethod
    def from_config(cls, model_name: str, params: dict[str, Any]) -> SupervisedEngine:
        """``params["engine"]`` names the engine the worker hosts; the rest are its params."""
        rest = dict(params)
        engine = rest.pop("engine", None)
        if not isinstance(engine, str):
            raise ConfigError(f"model {model_name!r}: a supervised engine needs params.engine")
        return cls(engine, model_name, rest, WorkerOptions())

    # ---- process lifecycle --------------------------------------------------------------

    def _spawn(self) -> _Conn:
        """Start a worker and wait for READY (blocking: call it from a thread)."""
        env = dict(os.environ)
        if self.options.memory_mb:
            env["OPENCLONE_WORKER_MEMORY_MB"] = str(self.options.memory_mb)
        try:  # out of file descriptors or memory (right after an OOM kill): try again later
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        except OSError as exc:
            raise _WorkerDied(f"could not be started: {exc}") from None
        try:
            argv = ["-m", "openclone.engines.worker_main", str(theirs.fileno()), str(os.getpid())]
            proc = subprocess.Popen(
                [sys.executable, *argv],
                pass_fds=(theirs.fileno(),),
                env=env,
                stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            ours.close()
            raise _WorkerDied(f"could not be started: {exc}") from None
        finally:
            theirs.close()  # only the worker holds it now: its death closes the socket
        self._starting = proc
        spec = {"engine": self.engine_name, "model": self.model_name, "params": self.params}
        try:
            ours.sendall(frame(Kind.SPEC, 0, json.dumps(spec).encode()))
            ours.settimeout(self.options.start_timeout)
            kind, _, payload = read_frame_sync(ours)
        except (OSError, EOFError, ConnectionError, ValueError) as exc:
            ours.close()
            reason = exit_reason(_reap(proc)) if not isinstance(exc, TimeoutError) else None
            if reason is None:
                _kill(proc)
                reason = f"did not start within {self.options.start_timeout:.0f} s"
            raise _WorkerDied(reason) from None
        if kind != Kind.READY and kind != Kind.FATAL:
            ours.close()
            _kill(proc)
            raise _WorkerDied(f"answered {kind.name} instead of READY")
        if kind == Kind.FATAL:
            ours.close()
            err = error_from(payload)
            _reap(proc)
            if isinstance(err, ConfigError):  # restarting would meet the same configuration
                raise err from None
            raise _WorkerDied(f"failed to start: {err}")
        ours.settimeout(None)
        ours.setblocking(False)
        try:
            ready = json.loads(payload)
        except ValueError:
            ours.close()
            _kill(proc)
            raise _WorkerDied("sent an unreadable READY") from None
        return _Conn(proc, ours, ready)

    def _accept(self, conn: _Conn) -> None:
        ready = conn.ready
        self.capabilities = capabilities_from(ready.get("capabilities", {}))
        self._adapters = list(ready.get("adapters", []))
        self._detail = dict(ready.get("detail", {}))
        self._conn = conn
        self._state = "ready"
        log.info("engine worker for %s ready (pid %d)", self.model_name, conn.proc.pid)

    def _record_exit(self, reason: str) -> None:
        self._last_exit = {"reason": reason, "at": time.time()}

    async def _attach(self) -> None:
        """Bind to the running event loop on first use (start the supervisor); wait while a
        started worker's socket is being opened."""
        if self._supervisor is None and not self._closed:
            self._supervisor = asyncio.create_task(
                self._supervise(), name=f"supervisor-{self.model_name}"
            )
        if self._conn is not None and self._conn.writer is None:
            await self._ready.wait()

    async def _open(self, conn: _Conn) -> None:
        conn.reader, conn.writer = await asyncio.open_unix_connection(sock=conn.sock, limit=2**20)
        self._ready.set()

    async def _supervise(self) -> None:
        while not self._closed:
            conn = self._conn
            if conn is None:
                await asyncio.sleep(max(0.0, self._next_start - time.monotonic()))
                if self._closed:
                    return
                try:
                    conn = await asyncio.to_thread(self._spawn)
                except (ConfigError, _WorkerDied) as exc:
                    self._starting = None
                    self._restarts += 1
                    self._record_exit(str(exc))
                    self._schedule_restart()
                    log.error("engine worker for %s failed to start: %s", self.model_name, exc)
                    continue
                self._starting = None
                if self._closed:  # close() came while it loaded
                    conn.sock.close()
                    _stop(conn.proc, 30.0)
                    return
                self._restarts += 1
                self._accept(conn)
                await self._open(conn)
            elif conn.reader is None:
                await self._open(conn)
            watchdog = asyncio.create_task(self._watch(conn), name=f"watchdog-{self.model_name}")
            try:
                await self._read(conn)
            finally:
                watchdog.cancel()
            self._conn = None  # before anything awaits: no new request may pick it
            self._ready.clear()
            if self._closed:
                return
            # A worker that died is reaped at once; one whose socket broke (or that spoke
            # nonsense) but lives on is killed after a moment.
            reason = exit_reason(await asyncio.to_thread(_reap, conn.proc, 3.0))
            self._died(conn, conn.hung or reason)

    async def _watch(self, conn: _Conn) -> None:
        """Ping the worker; kill it once its :class:`Liveness` says it hangs (its socket then
        closes, and ``_supervise`` restarts it as after any death)."""
        timeout = self.options.hang_timeout
        if timeout <= 0:
            return
        every = min(_PING_EVERY, timeout / 4)
        now = time.monotonic()
        conn.live = Liveness(now, now)  # from now: the worker may have waited to be used
        while conn.writer is not None and not conn.writer.is_closing():
            await asyncio.sleep(every)
            now = time.monotonic()
            why = conn.live.hung(now, timeout)
            if why is not None:
                conn.hung = why
                log.error("engine worker for %s (pid %d) %s", self.model_name, conn.proc.pid, why)
                with contextlib.suppress(ProcessLookupError):
                    conn.proc.kill()
                # Its socket may outlive it (a process stuck in the kernel, a child holding
                # the descriptor): end the connection here so that _read returns either way.
                conn.writer.transport.abort()
                return
            conn.writer.write(frame(Kind.PING, 0))  # answered by a PONG, or not

    async def _read(self, conn: _Conn) -> None:
        assert conn.reader is not None
        while True:
            try:
                kind, rid, payload = await read_frame(conn.reader)
            except FrameTooLarge as exc:  # that request fails; the others go on
                pending = self._pending.get(exc.rid)
                if pending is not None:
                    pending.events.put_nowait((Kind.ERROR, error_payload(exc.error())))
                continue
            except Exception:  # EOF, a broken socket or a bad frame: the worker is lost
                return
            conn.live.heard = time.monotonic()
            if kind == Kind.PONG:
                conn.live.pong(payload, conn.live.heard)
                continue
            if kind == Kind.DETAIL:
                with contextlib.suppress(ValueError):
                    self._detail = json.loads(payload)
                continue
            pending = self._pending.get(rid)
            if pending is not None:
                pending.events.put_nowait((kind, payload))

    def _died(self, conn: _Conn, reason: str) -> None:
        if conn.writer is not None:
            conn.writer.close()
        self._record_exit(reason)
        up_for = time.monotonic() - conn.started
        if up_for >= self.options.stable_after:
            self._backoff = self.options.backoff_first
        self._schedule_restart()
        log.error(
            "engine worker for %s (pid %d) %s; %d request(s) affected; restarting in %.1f s",
            self.model_name,
            conn.proc.pid,
            reason,
            len(self._pending),
            self._next_start - time.monotonic(),
        )
        for pending in self._pending.values():
            pending.died = True
            pending.events.put_nowait((Kind.FATAL, reason.encode()))

    def _schedule_restart(self) -> None:
        self._state = "restarting"
        self._next_start = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self.options.backoff_max)

    def _unavailable(self, why: str, retryable: bool = True) -> EngineError:
        err = EngineError(
            f"the engine worker of model '{self.model_name}' {why}",
            code="engine_unavailable",
            retryable=retryable,
            status_code=503,
        )
        err.retry_after = max(1.0, self._next_start - time.monotonic())
        return err

    # ---- requests -----------------------------------------------------------------------

    async def _send(self, kind: Kind, payload: bytes) -> tuple[int, _Pending]:
        await self._attach()
        conn = self._conn
        if self._closed:
            raise EngineError(
                "engine is shutting down",
                code="engine_unavailable",
                retryable=True,
                status_code=503,
            )
        if conn is None or conn.writer is None:
            raise self._unavailable(f"is restarting after it {self._lastexit_reason()}")
        if len(payload) > MAX_FRAME:
            raise FrameTooLarge(0, len(payload)).error()
        rid = next(self._ids)
        pending = self._pending[rid] = _Pending()
        try:
            conn.writer.write(frame(kind, rid, payload))
            await conn.writer.drain()
        except BaseException as exc:
            self._cancel(rid)
            if isinstance(exc, (ConnectionError, OSError)):  # it died just now
                raise self._unavailable("stopped before answering") from None
            raise
        return rid, pending

    def _lastexit_reason(self) -> str:
        return (self._last_exit or {}).get("reason", "stopped")

    def _cancel(self, rid: int) -> None:
        self._pending.pop(rid, None)
        conn = self._conn
        if conn is not None and conn.writer is not None and not conn.writer.is_closing():
            conn.writer.write(frame(Kind.CANCEL, rid))

    def _failure(self, kind: Kind, payload: bytes, pending: _Pending) -> OpenCloneError:
        if kind == Kind.ERROR:
            return error_from(payload)
        reason = payload.decode()
        if pending.started:
            return EngineError(
                f"the engine worker of model '{self.model_name}' {reason} mid-stream; "
                "the answer is incomplete",
                code="engine_unavailable",
                status_code=503,
            )
        err = self._unavailable(f"{reason} before answering")
        err.crashed = pending.died  # the router counts such deaths (not a shutdown)
        return err

    async def _call(self, kind: Kind, req: BaseModel, scope: str | None, out: type[M]) -> M:
        rid, pending = await self._send(kind, _request_payload(req, scope))
        done = False
        try:
            got, payload = await pending.events.get()
            done = True
            if got == Kind.RESULT:
                return out.model_validate_json(payload)
            raise self._failure(got, payload, pending)
        finally:
            if done:
                self._pending.pop(rid, None)
            else:
                self._cancel(rid)

    async def _stream(
        self, kind: Kind, req: BaseModel, scope: str | None, out: type[M]
    ) -> AsyncGenerator[M, None]:
        rid, pending = await self._send(kind, _request_payload(req, scope))
        done = False
        try:
            while True:
                got, payload = await pending.events.get()
                if got == Kind.ITEM:
                    pending.started = True
                    yield out.model_validate_json(payload)
                    continue
                done = True
                if got == Kind.END:
                    return
                raise self._failure(got, payload, pending)
        finally:
            if done:
                self._pending.pop(rid, None)
            else:
                self._cancel(rid)

    # ---- the Engine protocol ------------------------------------------------------------

    async def chat(self, req: ChatCompletionRequest) -> ChatCompletion:
        return await self._call(Kind.CHAT, req, req.cache_scope, ChatCompletion)

    def stream(self, req: ChatCompletionRequest) -> AsyncGenerator[ChatCompletionChunk, None]:
        return self._stream(Kind.STREAM, req, req.cache_scope, ChatCompletionChunk)

    async def complete(self, req: CompletionRequest) -> Completion:
        return await self._call(Kind.COMPLETE, req, req.cache_scope, Completion)

    def stream_complete(self, req: CompletionRequest) -> AsyncGenerator[Completion, None]:
        return self._stream(Kind.STREAM_COMPLETE, req, req.cache_scope, Completion)

    async def embed(self, req: EmbeddingRequest) -> EmbeddingList:
        # Whether the worker's engine embeds is in its READY capabilities; it refuses if not.
        return await self._call(Kind.EMBED, req, None, EmbeddingList)

    def adapter_names(self) -> list[str]:
        return list(self._adapters)

    async def add_adapter(self, name: str, path: str) -> None:
        await self._adapter_call(Kind.ADD_ADAPTER, {"name": name, "path": path})
        # A restarted worker loads what its parameters name: keep the adapter on restarts.
        adapters = dict(self.params.get("adapters") or {})
        adapters[name] = path
        self.params = {**self.params, "adapters": adapters}

    async def remove_adapter(self, name: str) -> None:
        # Not reloaded by a restarted worker either.
        adapters = dict(self.params.get("adapters") or {})
        adapters.pop(name, None)
        self.params = {**self.params, "adapters": adapters}
        if name in self._adapters:
            self._adapters = [n for n in self._adapters if n != name]  # refused from now
            await self._adapter_call(Kind.REMOVE_ADAPTER, {"name": name})

    async def _adapter_call(self, kind: Kind, body: dict[str, str]) -> None:
        """Send ADD_ADAPTER or REMOVE_ADAPTER; the worker answers its adapter names."""
        rid, pending = await self._send(kind, json.dumps(body).encode())
        try:
            got, payload = await pending.events.get()
        finally:
            self._pending.pop(rid, None)
        if got != Kind.RESULT:
            raise self._failure(got, payload, pending)
        self._adapters = json.loads(payload)

    async def health(self) -> bool:
        await self._attach()
        conn = self._conn
        return conn is not None and conn.proc.poll() is None and not self._closed

    def worker_status(self) -> dict[str, Any]:
        conn = self._conn
        return {
            "state": self._state,
            "pid": conn.proc.pid if conn is not None else None,
            "restarts": self._restarts,
            "last_exit": self._last_exit,
        }

    def describe(self) -> dict[str, Any]:
        return dict(self._detail)  # the worker's own state: worker_status()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._state = "stopped"
        conn = self._conn
        starting = self._starting
        if starting is not None:  # loading a model nobody will ask anything of
            _kill(starting)
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        for pending in self._pending.values():
            pending.events.put_nowait((Kind.FATAL, b"was stopped (the server is shutting down)"))
        self._ready.set()
        if conn is None:
            return
        # The worker stops at SHUTDOWN or at the end of its socket, whichever comes first.
        if conn.writer is not None and not conn.writer.is_closing():
            with contextlib.suppress(ConnectionError, OSError):
                conn.writer.write(frame(Kind.SHUTDOWN, 0))
                await conn.writer.drain()
        else:
            conn.sock.close()
        await asyncio.to_thread(_stop, conn.proc, 30.0)
        if conn.writer is not None:
            conn.writer.close()
        self._conn = None


def _request_payload(req: BaseModel, scope: str | None) -> bytes:
    return (
        json.dumps(scope).encode()
        + b"\n"
        + req.model_dump_json(by_alias=True, exclude_unset=True).encode()
    )


def _reap(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int | None:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        return proc.returncode


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


def _stop(proc: subprocess.Popen[bytes], grace: float) -> None:
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            _kill(proc)


def exit_reason(code: int | None) -> str:
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory, or kill -9)" if name == "SIGKILL" else ""
        return f"was killed by {name}{hint}"
    return f"exited with code {code}"
