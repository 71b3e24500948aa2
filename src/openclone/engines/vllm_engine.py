"""vLLM as a managed engine: OpenClone starts ``vllm serve`` with LoRA on, or attaches to one.

Requests go through the ``openai`` engine's machinery (this class is an
:class:`~openclone.engines.openai_upstream.OpenAIEngine` with a process and adapters added),
so errors, streaming and the tenant ``cache_salt`` behave as for any upstream. On top:

* **Process** (no ``base_url``): ``vllm serve MODEL --host 127.0.0.1 --port P --enable-lora
  ...`` runs in its own process group with ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``; the
  engine is ready once ``/health`` answers. When it dies it is started again after a backoff
  (0.5 s doubling to 30 s; reset after a minute up) and every adapter is loaded again.
  ``close()`` stops the whole group (vLLM's engine-core children hold the GPU).
* **Adapters**: configured adapters and :meth:`VLLMEngine.add_adapter` go through vLLM's
  runtime API (``POST /v1/load_lora_adapter``); :meth:`VLLMEngine.remove_adapter` unloads.
  vLLM serves a LoRA under its ``lora_name``, so a request for ``BASE:ADAPTER`` or
  ``ADAPTER`` is sent with ``model = ADAPTER``. An adapter vLLM refused answers with that
  reason (``adapter_load_failed``), never with the base's or another adapter's output.
  Every ``sync_interval`` seconds ``/v1/models`` is compared with what should be loaded, which
  also re-loads adapters after an attached server restarted behind OpenClone's back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import AsyncGenerator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from openclone.engines.base import Capabilities
from openclone.engines.openai_upstream import OpenAIConfig, OpenAIEngine
from openclone.engines.supervised import WorkerOptions, exit_reason
from openclone.engines.upstream_http import TRANSPORT_ERRORS, UpstreamHTTP, UpstreamResponse
from openclone.errors import ConfigError, EngineError, ModelNotFound
from openclone.model_names import parse_model_name
from openclone.schema import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    EmbeddingList,
    EmbeddingRequest,
)

__all__ = ["VLLMConfig", "VLLMEngine"]

log = logging.getLogger("openclone.vllm")
_ADAPTER_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
# Params that only mean something when OpenClone runs the process itself.
_PROCESS_PARAMS = {"command", "host", "port", "gpu_memory_utilization", "extra_args", "env"}
# The engine workers' restart policy: 0.5 s doubling to 30 s, reset after a minute up.
_RESTART = WorkerOptions()
# A /v1/models check that fails (down, or not the JSON expected) is skipped, not fatal.
_SYNC_ERRORS: tuple[type[Exception], ...] = (*TRANSPORT_ERRORS, ValueError, AttributeError)


class VLLMConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="what `vllm serve` loads: an HF id or directory")
    base_url: str | None = Field(None, description="attach to this running server (…/v1)")
    served_model_name: str | None = None  # the base's name at vLLM; default: `model`
    command: str | list[str] = "vllm"
    host: str = "127.0.0.1"  # the runtime LoRA API must not be open to the network
    port: int | None = Field(None, ge=1, le=65535)  # default: a free port
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    max_loras: int = Field(4, ge=1)  # adapters in one batch on the GPU
    max_lora_rank: int = Field(16, ge=1)
    extra_args: list[str] = []
    adapters: dict[str, str] = {}  # name -> PEFT adapter directory
    start_timeout: float = Field(900.0, gt=0)  # seconds for vLLM to load the model
    env: dict[str, str] = {}
    sync_interval: float = Field(10.0, gt=0)  # seconds between adapter checks
    # Passed to the openai engine.
    api_key: str | None = None
    api_key_env: str | None = None
    timeout: float = 600.0
    max_connections: int = 256
    max_context: int | None = None
    cache_salt: bool = True  # vLLM >= 0.9 takes it; older servers reject the field

    @model_validator(mode="after")
    def _one_mode(self) -> VLLMConfig:
        if self.base_url is None and not self.model:
            raise ValueError("give `model` (OpenClone runs vllm serve) or `base_url` (attach)")
        if self.base_url is not None and (stray := _PROCESS_PARAMS & self.model_fields_set):
            raise ValueError(f"{', '.join(sorted(stray))} only apply when OpenClone runs vLLM")
        for name in self.adapters:
            if not _ADAPTER_NAME.fullmatch(name):
                raise ValueError(f"bad adapter name {name!r}")
        return self

    def command_line(self, port: int) -> list[str]:
        """The ``vllm serve`` argv for this configuration on ``port``."""
        cmd = shlex.split(self.command) if isinstance(self.command, str) else list(self.command)
        argv = [*cmd, "serve", str(self.model), "--host", self.host, "--port", str(port)]
        argv += ["--enable-lora", "--max-loras", str(self.max_loras)]
        argv += ["--max-lora-rank", str(self.max_lora_rank)]
        if self.served_model_name:
            argv += ["--served-model-name", self.served_model_name]
        if self.gpu_memory_utilization is not None:
            argv += ["--gpu-memory-utilization", str(self.gpu_memory_utilization)]
        return argv + self.extra_args


class _Down(Exception):
    """vLLM exited or did not come up in time."""


class VLLMEngine(OpenAIEngine):
    def __init__(self, model_name: str, config: VLLMConfig) -> None:
        self.config = config
        self.managed = config.base_url is None
        self.port = (config.port or _free_port()) if self.managed else None
        base_url = config.base_url or f"http://{_dial(config.host)}:{self.port}/v1"
        served = config.served_model_name or config.model or model_name
        upstream = OpenAIConfig(
            base_url=base_url,
            api_key=config.api_key,
            api_key_env=config.api_key_env,
            model=served,
            timeout=config.timeout,
            max_connections=config.max_connections,
            max_context=config.max_context,
            cache_salt=config.cache_salt,
        )
        super().__init__(model_name, upstream)
        self.capabilities = Capabilities(
            tools=True, json_schema=True, logprobs=True, adapters=True,
            max_context=config.max_context, embeddings=True,
        )  # fmt: skip
        root = self.base_url.removesuffix("/v1")
        key = config.api_key or (os.environ.get(config.api_key_env) if config.api_key_env else None)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        # Health and the adapter API live beside /v1 requests; a small pool of their own.
        self._control = UpstreamHTTP(root, headers, 120.0, 5.0, 4)
        self._adapters: dict[str, str] = {}  # what should be loaded: name -> path
        self._removed: set[str] = set()  # unloaded (archived): refused, not sent to the base
        self._loaded: set[str] = set()  # loaded on the server now
        self._failed: dict[str, str] = {}  # name -> why vLLM refused it
        self._proc: subprocess.Popen[bytes] | None = None
        self._up_since = 0.0
        self._restarts = 0
        self._last_exit: str | None = None
        self._state = "starting"
        self._closed = False
        self._watcher: asyncio.Task[None] | None = None
        self._lock: asyncio.Lock | None = None
        # Called in a worker thread (the router builds engines off its loop): a loop of our own.
        try:
            asyncio.run(self._start(dict(config.adapters)))
        except BaseException:
            self._stop_process()
            raise

    @classmethod
    def from_config(cls, model_name: str, params: dict[str, Any]) -> VLLMEngine:
        try:
            config = VLLMConfig(**params)
        except ValidationError as exc:
            raise ConfigError(f"model {model_name!r}: invalid vllm parameters: {exc}") from exc
        return cls(model_name, config)

    # ---- process ------------------------------------------------------------------------

    async def _start(self, adapters: dict[str, str]) -> None:
        try:
            if self.managed:
                self._spawn()
            try:
                await self._wait_healthy()
            except _Down as exc:
                raise ConfigError(f"model {self.model_name!r}: vLLM {exc}") from None
            for name, path in adapters.items():
                try:
                    await self._load(name, path)
                except EngineError as exc:
                    raise ConfigError(exc.message) from exc
            self._state = "ready"
        finally:
            await self._control.aclose()  # this loop ends here; the server's makes a new one

    def _spawn(self) -> None:
        assert self.port is not None
        argv = self.config.command_line(self.port)
        env = {**os.environ, **self.config.env, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
        try:
            # A group of its own: close() and restarts stop vLLM's children too.
            self._proc = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, start_new_session=True
            )
        except OSError as exc:
            raise ConfigError(f"model {self.model_name!r}: cannot run {argv[0]!r}: {exc}") from exc
        self._up_since = time.monotonic()
        log.info("started vLLM for %s (pid %d): %s", self.model_name, self._proc.pid,
                 shlex.join(argv))  # fmt: skip

    async def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.config.start_timeout
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise _Down(exit_reason(self._proc.returncode))
            with contextlib.suppress(*TRANSPORT_ERRORS):
                if (await self._control.get("/health", time_limit=2.0)).status == 200:
                    return
            if time.monotonic() > deadline:
                raise _Down(f"did not answer /health within {self.config.start_timeout:.0f} s")
            await asyncio.sleep(0.2)

    def _stop_process(self, grace: float = 15.0) -> None:
        """Stop vLLM's process group: SIGTERM, then SIGKILL after ``grace`` seconds."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)  # the group outlives its leader: always signal it
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(wait)
                if sig == signal.SIGKILL or not _group_alive(proc.pid):
                    break

    async def _supervise(self) -> None:
        last_sync = time.monotonic()
        backoff = _RESTART.backoff_first
        while not self._closed:
            await asyncio.sleep(0.5)
            proc = self._proc
            if proc is not None and proc.poll() is not None:
                if time.monotonic() - self._up_since >= _RESTART.stable_after:
                    backoff = _RESTART.backoff_first
                backoff = await self._restart(exit_reason(proc.returncode), backoff)
                last_sync = time.monotonic()
            elif time.monotonic() - last_sync >= self.config.sync_interval:
                last_sync = time.monotonic()
                with contextlib.suppress(EngineError):
                    await self._sync()

    async def _restart(self, reason: str, backoff: float) -> float:
        """Start vLLM again until it answers, then load every adapter; the next backoff."""
        self._last_exit, self._state = reason, "restarting"
        self._loaded.clear()
        log.error("vLLM for %s %s; restarting in %.1f s", self.model_name, reason, backoff)
        await asyncio.to_thread(self._stop_process, 5.0)  # children the leader left behind
        while not self._closed:
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _RESTART.backoff_max)
            try:
                self._spawn()  # not in a thread: close() must find the process it made
                await self._wait_healthy()
            except (_Down, ConfigError) as exc:
                self._last_exit = str(exc)
                log.error("vLLM for %s did not start: %s", self.model_name, exc)
                await asyncio.to_thread(self._stop_process, 5.0)
                continue
            self._restarts += 1
            await self._sync(everything=True)
            self._state = "ready"
            log.info("vLLM for %s is back with adapters %s", self.model_name, sorted(self._loaded))
            break
        return backoff

    def _supervised(self) -> None:
        """Start the supervisor on the server's loop at first use."""
        if self._watcher is None and not self._closed:
            self._lock = asyncio.Lock()
            self._watcher = asyncio.create_task(self._supervise(), name=f"vllm-{self.model_name}")

    # ---- adapters -----------------------------------------------------------------------

    def adapter_names(self) -> list[str]:
        return [n for n in self._adapters if n not in self._failed]

    async def add_adapter(self, name: str, path: str) -> None:
        """Load the PEFT adapter at ``path`` into vLLM as ``name``; an ``EngineError``
        (``adapter_load_failed``) with vLLM's reason when it refuses."""
        self._supervised()
        if not _ADAPTER_NAME.fullmatch(name):
            raise ConfigError(f"model {self.model_name!r}: bad adapter name {name!r}")
        assert self._lock is not None
        async with self._lock:
            if self._adapters.get(name) == path and name in self._loaded:
                return
            if name in self._loaded:  # the same name from another directory: replace it
                await self._unload(name)
            await self._load(name, path)

    async def remove_adapter(self, name: str) -> None:
        """Unload ``name`` (an archived model); unknown names are ignored."""
        self._supervised()
        assert self._lock is not None
        async with self._lock:
            if self._adapters.pop(name, None) is not None:
                self._removed.add(name)
            self._failed.pop(name, None)
            if name in self._loaded:
                await self._unload(name)

    async def _load(self, name: str, path: str) -> None:
        self._adapters[name] = path
        self._removed.discard(name)
        self._failed.pop(name, None)
        resp = await self._call("/v1/load_lora_adapter", {"lora_name": name, "lora_path": path})
        if resp.status == 400 and b"already" in resp.content:
            # An attached server has one by this name, maybe from elsewhere: make it this one.
            await self._unload(name)
            resp = await self._call("/v1/load_lora_adapter", {"lora_name": name, "lora_path": path})
        if resp.status != 200:
            why = _message(resp.content) or f"HTTP {resp.status}"
            self._failed[name] = (
                f"model {self.model_name!r}: vLLM could not load adapter {name!r} from {path}: {why}"
            )
            raise _load_failed(self._failed[name])
        self._loaded.add(name)

    async def _unload(self, name: str) -> None:
        resp = await self._call("/v1/unload_lora_adapter", {"lora_name": name})
        self._loaded.discard(name)
        if resp.status not in (200, 404):  # 404: it was not loaded (a restarted server)
            why = _message(resp.content) or f"HTTP {resp.status}"
            raise EngineError(f"vLLM could not unload adapter {name!r}: {why}")

    async def _call(self, path: str, body: dict[str, str]) -> UpstreamResponse:
        try:
            return await self._control.post(path, json.dumps(body).encode())
        except TRANSPORT_ERRORS as exc:
            raise EngineError(
                f"vLLM for {self.model_name!r} is unreachable: {type(exc).__name__}",
                retryable=True, status_code=503, code="upstream_unavailable",
            ) from exc  # fmt: skip

    async def _sync(self, everything: bool = False) -> None:
        """Load what should be loaded and is not (after a restart: ``everything``)."""
        assert self._lock is not None
        async with self._lock:
            if not everything:
                try:
                    resp = await self._control.get("/v1/models", time_limit=5.0)
                    served = {m.get("id") for m in json.loads(resp.content).get("data", [])}
                except _SYNC_ERRORS:
                    return  # down or odd: the process watch or the next round deals with it
                if resp.status != 200:
                    return
                self._loaded &= served
            for name, path in list(self._adapters.items()):
                if name in self._loaded or (name in self._failed and not everything):
                    continue
                try:
                    await self._load(name, path)
                except EngineError as exc:
                    log.error("%s", exc.message)

    # ---- requests -----------------------------------------------------------------------

    def _upstream_name(self, req: BaseModel) -> str:
        """``model`` at vLLM: the base's served name, or the adapter's ``lora_name``."""
        asked = str(getattr(req, "model", "") or "")
        known = asked in self._adapters or asked in self._removed
        adapter = asked if known else parse_model_name(asked).adapter
        if not adapter or asked == self.model_name:
            return self.upstream_model
        if adapter in self._failed:
            raise _load_failed(self._failed[adapter])
        if adapter not in self._adapters:
            have = ", ".join(self.adapter_names()) or "none"
            raise ModelNotFound(
                f"The model '{asked}' does not exist: model {self.model_name!r} has no "
                f"adapter {adapter!r} (adapters: {have})",
                param="model",
            )
        if adapter not in self._loaded:  # vLLM is restarting: another replica, or later
            err = EngineError(
                f"adapter {adapter!r} is being loaded into vLLM again",
                retryable=True, status_code=503, code="adapter_loading",
            )  # fmt: skip
            err.retry_after = 5.0
            raise err
        return adapter

    async def chat(self, req: ChatCompletionRequest) -> ChatCompletion:
        self._supervised()
        return await super().chat(req)

    def stream(self, req: ChatCompletionRequest) -> AsyncGenerator[ChatCompletionChunk, None]:
        self._supervised()
        return super().stream(req)

    async def complete(self, req: CompletionRequest) -> Completion:
        self._supervised()
        return await super().complete(req)

    def stream_complete(self, req: CompletionRequest) -> AsyncGenerator[Completion, None]:
        self._supervised()
        return super().stream_complete(req)

    async def embed(self, req: EmbeddingRequest) -> EmbeddingList:
        self._supervised()
        return await super().embed(req)

    async def health(self) -> bool:
        self._supervised()
        return self._state == "ready" and await super().health()

    def describe(self) -> dict[str, Any]:
        return {
            "engine": "vllm",
            "base_url": self.base_url,
            "upstream_model": self.upstream_model,
            "managed": self.managed,
            "state": self._state,
            "pid": self._proc.pid if self._proc is not None else None,
            "restarts": self._restarts,
            "last_exit": self._last_exit,
            "adapters": sorted(self._loaded),
            "failed_adapters": sorted(self._failed),
        }

    async def close(self) -> None:
        if self._closed:
            return
        self._closed, self._state = True, "stopped"
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await asyncio.to_thread(self._stop_process)
        await self._control.aclose()
        await super().close()


def _load_failed(message: str) -> EngineError:
    return EngineError(message, code="adapter_load_failed", param="model")


def _message(content: bytes) -> str:
    """vLLM's error text: ``{"error": {...}}`` (newer) or ``{"message": ...}`` (older)."""
    try:
        data = json.loads(content)
    except ValueError:
        return content.decode(errors="replace").strip()[:500]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            return str(err.get("message") or "")
        return str(err)
    return str(data)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dial(host: str) -> str:
    """The address to reach a server bound to ``host``."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
