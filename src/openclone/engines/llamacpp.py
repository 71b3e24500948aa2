"""GGUF models in process through llama.cpp, with continuous batching.

One worker thread owns the llama.cpp context and runs a scheduler loop: every step it
builds one batch holding the next token of every generating sequence plus chunks of
waiting prompts, decodes it in a single ``llama_decode`` call and samples each sequence
with its own sampler chain. New requests join at the next step (continuous batching), so
eight clients cost little more per step than one. Each slot keeps its KV cache between
requests and a new request takes the slot sharing the longest prompt prefix, so a chat
that grows turn by turn only evaluates its new tokens. A slot's KV is saved to a host-memory
prompt cache before another request overwrites it, so with more conversations than slots a
returning chat (or a repeated system prompt) still skips what was evaluated before.

The model's own chat template (GGUF metadata) formats chats; JSON output and forced tool
calls are enforced with llama.cpp grammars. Embeddings come from a second, lazily created
context on the same weights (:mod:`openclone.engines.llamacpp_embed`).
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import queue
import random
import re
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from openclone.engines.base import Capabilities
from openclone.engines.ggml_threads import make_threadpool
from openclone.engines.llamacpp_embed import LlamaEmbedder
from openclone.engines.local import Finished, Job, LocalEngine, TokenOut
from openclone.engines.prompt_cache import PromptCache
from openclone.engines.textstream import StopAwareText
from openclone.errors import ConfigError, EngineError, ModelNotFound, UnsupportedParameter
from openclone.model_names import parse_model_name
from openclone.schema import (
    Embedding,
    EmbeddingList,
    EmbeddingRequest,
    EmbeddingUsage,
    FinishReason,
    TokenLogprob,
    TopLogprob,
)

__all__ = ["LlamaCppConfig", "LlamaCppEngine", "cpu_has_amx", "next_turn", "use_extra_buffers"]

log = logging.getLogger("openclone.engines.llamacpp")
_ADAPTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class LlamaCppConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_path: str | None = None  # None: the bundled SmolLM2-135M-Instruct
    n_ctx: int = Field(default=4096, ge=64, description="context per request (per slot)")
    n_parallel: int = Field(default=8, ge=1, le=64, description="requests decoded together")
    n_threads: int | None = None
    n_batch: int = Field(default=512, ge=32)
    n_gpu_layers: int = 0
    flash_attn: Literal["auto", "on", "off"] = "auto"
    kv_unified: bool = Field(default=False, description="one KV pool shared by all slots")
    # Measured (benchmarks/serve_overhead.py, 2 cores): 0 serves 3-8% more tokens/s than
    # llama.cpp's spinning pool, because the event loop gets the core between decode steps.
    thread_poll: int = Field(
        default=0,
        ge=-1,
        le=100,
        description="ggml idle spin level; 0 frees the CPU between steps; -1: llama.cpp's own pool",
    )
    prompt_cache_mb: int = Field(
        default=1024,
        ge=0,
        description="host memory for the KV of earlier prompts, reused by later ones; 0: off",
    )
    prompt_cache_min_tokens: int = Field(
        default=32, ge=1, description="shorter prefixes are evaluated again, not cached"
    )
    max_queue: int = Field(default=256, ge=1)
    chat_template: str | None = None  # overrides the GGUF's own
    # ggml's extra CPU weight layouts: AMX tiles and repacked (interleaved) blocks. Its AMX
    # matmul faults on some Intel AMX CPUs (llama.cpp#20824), killing the process, so
    # "auto" turns them off where the build and the CPU both have AMX.
    extra_buffers: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="ggml AMX/repacked weight buffers; auto: off on AMX CPUs, else on",
    )
    # Its compute buffer grows with this (~100 MB at 512 for the bundled model), and it is
    # only allocated on the first embeddings request.
    embed_n_ctx: int = Field(
        default=512, ge=0, description="longest embeddings input in tokens; 0: no embeddings"
    )
    adapters: dict[str, str] = Field(
        default_factory=dict, description="adapter name -> GGUF LoRA file (llama.cpp format)"
    )
    max_adapters: int = Field(
        default=32, ge=1, description="adapters kept loaded; the least recently used go first"
    )
    adapter_turn: int = Field(
        default=8,
        ge=1,
        description="steps the sequences of one adapter decode before the next adapter's turn "
        "(llama.cpp applies adapters per context: each switch costs a new compute graph)",
    )


def next_turn(
    in_use: Iterable[str | None], turn: tuple[str | None, int], steps: int
) -> tuple[str | None, int]:
    """Whose turn it is to decode, and for how many steps so far, counting this one.

    Adapters take turns of ``steps`` steps: llama.cpp applies one adapter set per context and
    a switch costs it a new compute graph, so switching every step (one decode per adapter
    per step) cost more than the decoding. The others' sequences wait their turn; turns go
    in name order (the base, ``None``, first), so every adapter in use gets one.
    """
    current, done = turn
    names = sorted(in_use, key=_turn_order)
    if current in names and done < steps:
        return current, done + 1
    later = [a for a in names if _turn_order(a) > _turn_order(current)]
    return (later or names)[0], 1


def _turn_order(adapter: str | None) -> tuple[bool, str]:
    return (adapter is not None, adapter or "")


@dataclass
class _Slot:
    seq: int
    cached: list[int] = field(default_factory=list)  # tokens whose KV this sequence holds
    scope: str | None = None  # whose tokens they are (GenParams.cache_scope)
    job: Job | None = None
    pending: list[int] = field(default_factory=list)  # prompt tokens still to evaluate
    last: int = -1  # the token sampled last, to be evaluated next step
    sampler: Any = None
    text: StopAwareText | None = None
    generated: int = 0

    @property
    def adapter(self) -> str | None:
        return self.job.params.adapter if self.job is not None else None


class LlamaCppEngine(LocalEngine):
    def __init__(self, model_name: str, config: LlamaCppConfig) -> None:
        from llama_cpp import _internals, llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        from openclone.config import bundled_model_path

        self.model_name = model_name
        self.max_queue = config.max_queue
        self.config = config
        path = Path(config.model_path) if config.model_path else bundled_model_path()
        if not path.is_file():
            raise ConfigError(f"model {model_name!r}: GGUF file not found: {path}")
        self.path = path
        from llama_cpp._logger import set_verbose

        self._c = llama_cpp
        set_verbose(False)  # llama.cpp's load chatter goes to stderr otherwise; errors still do
        llama_cpp.llama_backend_init()
        mparams = llama_cpp.llama_model_default_params()
        mparams.n_gpu_layers = config.n_gpu_layers
        self.extra_buffers = use_extra_buffers(config.extra_buffers)
        mparams.use_extra_bufts = self.extra_buffers
        try:
            self._model = _internals.LlamaModel(path_model=str(path), params=mparams, verbose=False)
        except ValueError as exc:
            raise ConfigError(f"model {model_name!r}: llama.cpp cannot load {path}: {exc}") from exc
        self._vocab = self._model.vocab
        threads = config.n_threads or os.cpu_count() or 1
        cparams = llama_cpp.llama_context_default_params()
        # Each slot gets n_ctx of KV either way, so admission control (prompt + max_tokens
        # <= n_ctx) is exact; separate regions avoid attending over other slots' cells.
        cparams.n_ctx = config.n_ctx * config.n_parallel
        cparams.n_batch = config.n_batch
        cparams.n_ubatch = config.n_batch
        cparams.n_seq_max = config.n_parallel
        cparams.kv_unified = config.kv_unified
        cparams.flash_attn_type = {"auto": -1, "off": 0, "on": 1}[config.flash_attn]
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        cparams.no_perf = True
        self._ctx = _internals.LlamaContext(model=self._model, params=cparams, verbose=False)
        self._pool = (
            make_threadpool(self._ctx.ctx, threads, config.thread_poll)
            if config.thread_poll >= 0
            else None
        )
        self._mem = llama_cpp.llama_get_memory(self._ctx.ctx)
        self._batch = llama_cpp.llama_batch_init(config.n_batch, 0, 1)
        self._n_vocab = self._model.n_vocab()
        self._slots = [_Slot(seq=i) for i in range(config.n_parallel)]
        self._cache = (
            PromptCache(config.prompt_cache_mb * 1024 * 1024) if config.prompt_cache_mb else None
        )
        self._prompt_tokens = {"reused": 0, "evaluated": 0}  # since start, for /health
        # LoRA adapters: every known one by name, the loaded ones in LRU order (scheduler
        # thread only), and which set the context applies now.
        self._adapter_paths: dict[str, str] = {}
        self._loaded: OrderedDict[str, Any] = OrderedDict()
        self._applied: str | None = None
        self._turn: tuple[str | None, int] = (None, 0)  # the adapter decoding, its steps so far
        self._broken: dict[str, str] = {}  # adapters llama.cpp refused: name -> why
        self._loads = 0  # adapters loaded since start (each reload after eviction counts)
        self._steps = 0  # llama_decode calls returned: a worker's watchdog sees it move
        for name, adapter_path in config.adapters.items():
            try:
                self._check_adapter(name, adapter_path)
            except ConfigError as exc:
                # One missing file (a run deleted since) must not keep the base and every
                # other adapter down across restarts: its own requests get the error.
                log.warning("%s", exc)
                self._adapter_paths = {**self._adapter_paths, name: adapter_path}
                self._broken[name] = str(exc)

        meta = self._model.metadata()
        template = config.chat_template or meta.get("tokenizer.chat_template")
        if not template:
            raise ConfigError(
                f"model {model_name!r}: the GGUF has no chat template; set chat_template"
            )
        eos = self._model.token_get_text(self._model.token_eos())
        bos_id = self._model.token_bos()
        bos = self._model.token_get_text(bos_id) if bos_id >= 0 else ""
        self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        self._pieces: dict[int, bytes] = {}
        self._piece_buf = ctypes.create_string_buffer(64)
        self.capabilities = Capabilities(
            streaming=True,
            completions=True,
            tools=True,
            json_schema=True,
            logprobs=True,
            adapters=True,
            max_context=config.n_ctx,
            embeddings=config.embed_n_ctx > 0,
        )
        self._embedder = (
            LlamaEmbedder(self._model, config.embed_n_ctx, threads) if config.embed_n_ctx else None
        )
        # One thread: the embedding context serves one request at a time, and a burst of
        # embeddings cannot take more than one core from generation.
        self._embed_pool = ThreadPoolExecutor(1, thread_name_prefix=f"embed-{model_name}")
        super().__init__()

    @classmethod
    def from_config(cls, model_name: str, params: dict[str, Any]) -> LlamaCppEngine:
        try:
            config = LlamaCppConfig(**params)
        except ValidationError as exc:
            raise ConfigError(f"model {model_name!r}: invalid llamacpp parameters: {exc}") from exc
        return cls(model_name, config)

    # ---- LocalEngine primitives ------------------------------------------------------------

    @property
    def n_ctx(self) -> int:
        return self.config.n_ctx

    def render_chat(self, messages: list[dict[str, Any]]) -> tuple[str, list[str]]:
        result = self._formatter(messages=messages)  # type: ignore[arg-type]
        stops = (
            result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        )
        return result.prompt, [s for s in stops if s]

    def tokenize(self, text: str) -> list[int]:
        # The chat template writes any BOS itself, so none is added here.
        return list(self._model.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def describe(self) -> dict[str, Any]:
        active = sum(1 for s in self._slots if s.job is not None)
        return {
            "engine": "llamacpp",
            "path": str(self.path),
            "n_ctx": self.n_ctx,
            "n_parallel": self.config.n_parallel,
            "extra_buffers": self.extra_buffers,
            "active": active,
            "adapters": {
                "known": len(self._adapter_paths),
                "loaded": len(self._loaded),
                "loads": self._loads,
            },
            "prompt_tokens": dict(self._prompt_tokens),
            **self.load(),
            **({"prompt_cache": self._cache.stats()} if self._cache is not None else {}),
        }

    def progress(self) -> int:
        """Decode steps since start (any thread may read it)."""
        return self._steps

    # ---- LoRA adapters --------------------------------------------------------------------

    def adapter_names(self) -> list[str]:
        return list(self._adapter_paths)

    async def add_adapter(self, name: str, path: str) -> None:
        """Offer the GGUF LoRA at ``path`` as ``name``; the scheduler loads it on first use."""
        self._check_adapter(name, path)
        self._removed.discard(name)

    async def remove_adapter(self, name: str) -> None:
        """Stop offering ``name``; the scheduler frees its weights once no slot uses them."""
        if name not in self._adapter_paths:
            return
        paths = dict(self._adapter_paths)
        del paths[name]
        self._adapter_paths = paths  # one swap: new requests for it are refused from now
        self._broken.pop(name, None)
        self._retire_adapter(name)

    def _adapters_in_use(self) -> set[str | None]:
        """Adapters of the slots decoding now (scheduler thread)."""
        return {s.adapter for s in self._slots if s.job is not None}

    def _tidy_adapters(self) -> None:
        """Between steps (scheduler thread): free removed adapters, and the least recently
        used ones over ``max_adapters`` (loaded while every other one was decoding), once
        no slot decodes with them."""
        self._retired.drain(self._adapters_in_use, self._adapter_paths, self._free)
        excess = len(self._loaded) - self.config.max_adapters
        if excess <= 0:
            return
        busy = self._adapters_in_use()
        idle = [n for n in self._loaded if n not in busy]  # least recently used first
        for name in idle[:excess]:
            self._free(name)

    def _free(self, name: str) -> None:
        handle = self._loaded.pop(name, None)
        if handle is None:
            return
        if name == self._applied:
            self._apply(None)  # the context must not keep a freed adapter
        self._c.llama_adapter_lora_free(handle)

    def _check_adapter(self, name: str, path: str) -> None:
        if not _ADAPTER_NAME.fullmatch(name):
            raise ConfigError(f"model {self.model_name!r}: bad adapter name {name!r}")
        try:
            with open(path, "rb") as f:
                magic = f.read(4)
        except OSError as exc:
            raise ConfigError(f"model {self.model_name!r}: adapter {name!r}: {exc}") from exc
        if magic != b"GGUF":
            raise ConfigError(
                f"model {self.model_name!r}: adapter {name!r}: {path} is not a GGUF LoRA file "
                "(llama.cpp serves adapters converted to GGUF; PEFT directories go to the "
                "transformers engine)"
            )
        known = self._adapter_paths.get(name)
        if known is not None and known != path and name not in self._broken:
            # Loaded weights and KV cached under this name belong to the old file.
            raise ConfigError(
                f"model {self.model_name!r}: adapter {name!r} is already served from {known}"
            )
        self._broken.pop(name, None)
        self._adapter_paths = {**self._adapter_paths, name: path}  # one swap: readers see one

    def _adapter(self, name: str) -> Any:
        """The loaded adapter (scheduler thread): loaded now if needed, the least recently
        used one freed when more than ``max_adapters`` would be loaded."""
        handle = self._loaded.get(name)
        if handle is not None:
            self._loaded.move_to_end(name)
            return handle
        broken = self._broken.get(name)
        if broken is not None:  # refused once: not read again on every request
            raise EngineError(broken, retryable=False, status_code=400)
        path = self._adapter_paths.get(name)
        if path is None:  # removed (archived) while this request waited in the queue
            raise ModelNotFound(
                f"The model '{name}' does not exist: model {self.model_name!r} no longer "
                f"serves adapter {name!r}",
                param="model",
            )
        busy = self._adapters_in_use()
        while len(self._loaded) >= self.config.max_adapters:
            victim = next((n for n in self._loaded if n not in busy), None)
            if victim is None:
                break  # every loaded adapter is decoding now: go over the bound briefly
            self._free(victim)
        handle = self._c.llama_adapter_lora_init(self._model.model, path.encode())
        if not handle:
            self._broken[name] = (
                f"model {self.model_name!r}: llama.cpp cannot load adapter {name!r} from {path} "
                "(not a LoRA for this base?)"
            )
            raise EngineError(self._broken[name], retryable=False, status_code=400)
        self._loaded[name] = handle
        self._loads += 1
        return handle

    def _apply(self, name: str | None) -> None:
        """Make the context decode with adapter ``name`` (None: the base weights)."""
        if name == self._applied:
            return
        if name is None:
            self._c.llama_set_adapters_lora(self._ctx.ctx, None, 0, None)
        else:
            handles = (self._c.llama_adapter_lora_p_ctypes * 1)(self._loaded[name])
            scales = (ctypes.c_float * 1)(1.0)
            self._c.llama_set_adapters_lora(self._ctx.ctx, handles, 1, scales)
        self._applied = name

    # ---- embeddings -----------------------------------------------------------------------

    async def embed(self, req: EmbeddingRequest) -> EmbeddingList:
        if req.model != self.model_name and (
            req.model in self._adapter_paths or parse_model_name(req.model).adapter
        ):
            # The embedding context has no adapters: base vectors under an adapter's name
            # would be a silent substitution.
            raise UnsupportedParameter(
                f"model {req.model!r} is a LoRA adapter; embeddings come from the base "
                f"model {self.model_name!r}",
                param="model",
            )
        embedder = self._embedder
        if embedder is None:
            raise UnsupportedParameter(
                f"model {self.model_name!r} does not support embeddings (embed_n_ctx = 0)",
                param="model",
            )
        if req.dimensions is not None and req.dimensions != embedder.n_embd:
            raise UnsupportedParameter(
                f"model {self.model_name!r} gives {embedder.n_embd}-dimensional embeddings "
                f"and cannot shorten them; leave dimensions out or set it to {embedder.n_embd}",
                param="dimensions",
            )
        if self._closed:
            raise EngineError("engine is shutting down", retryable=True, status_code=503)
        loop = asyncio.get_running_loop()
        try:
            vectors, tokens = await loop.run_in_executor(
                self._embed_pool, embedder.embed, req.inputs()
            )
        except RuntimeError as exc:  # the pool was shut down: close() is under way
            raise EngineError("engine is shutting down", retryable=True, status_code=503) from exc
        return EmbeddingList(
            data=[Embedding(index=i, embedding=v) for i, v in enumerate(vectors)],
            model=req.model,
            usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
        )

    async def close(self) -> None:
        # The embedding context uses the model's weights, which the scheduler frees at its
        # end: finish the embeddings in flight and free that context first.
        await asyncio.to_thread(self._embed_pool.shutdown, True)
        if self._embedder is not None:
            self._embedder.close()
        await super().close()

    def generate_sync(self, job: Job) -> None:  # pragma: no cover - the scheduler replaces it
        raise NotImplementedError("LlamaCppEngine schedules jobs in _work")

    # ---- the scheduler ------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            self._tidy_adapters()
            active = [s for s in self._slots if s.job is not None]
            self._busy = bool(active)
            if not self._admit(block=not active):
                break
            if any(s.job is not None for s in self._slots):
                self._step()
        self._shutdown()

    def _admit(self, block: bool) -> bool:
        """Move waiting jobs into free slots; False when the engine is closing."""
        while True:
            free = [s for s in self._slots if s.job is None]
            if not free:
                return True
            try:
                job = self._jobs.get(block=block)
            except queue.Empty:
                return True
            block = False
            if job is None:
                return False
            if job.cancelled.is_set():
                continue
            try:
                self._start(job, free)
            except BaseException as exc:
                job.emit(exc)

    def _start(self, job: Job, free: list[_Slot]) -> None:
        if job.params.adapter is not None:
            self._adapter(job.params.adapter)  # loaded before admission: errors go to this job
        # KV computed under one adapter is wrong for another: reuse is per tenant and adapter.
        scope = _scope(job.params.cache_scope, job.params.adapter)
        # Another scope's KV is never reused: it counts as sharing nothing.
        shared = {
            id(s): _common_prefix(s.cached, job.prompt) if s.scope == scope else 0 for s in free
        }
        slot = max(free, key=lambda s: shared[id(s)])
        keep = shared[id(slot)]
        if self._cache is not None:
            hit = self._cache.lookup(job.prompt, scope, better_than=keep)
            if hit is not None:
                # Restore into the free slot whose own KV matters least to this prompt.
                slot = min(free, key=lambda s: shared[id(s)])
                self._save(slot)
                keep = self._restore(slot, hit.tokens, hit.state, hit.shared)
            elif keep < len(slot.cached):
                self._save(slot)
        # Drop the KV past the shared prefix; at least one prompt token is re-evaluated so
        # that there are fresh logits to sample from.
        keep = min(keep, len(job.prompt) - 1)
        self._c.llama_memory_seq_rm(self._mem, slot.seq, keep, -1)
        slot.cached = job.prompt[:keep]
        slot.scope = scope
        slot.pending = job.prompt[keep:]
        self._prompt_tokens["reused"] += keep
        self._prompt_tokens["evaluated"] += len(slot.pending)
        slot.sampler = self._sampler(job)
        slot.text = StopAwareText(job.params.stop)
        slot.generated = 0
        slot.job = job

    def _save(self, slot: _Slot) -> None:
        """Copy the slot's KV into the prompt cache before it is overwritten."""
        cache = self._cache
        if (
            cache is None
            or len(slot.cached) < self.config.prompt_cache_min_tokens
            or cache.covered(slot.cached, slot.scope)
        ):
            return
        ctx = self._ctx.ctx
        size = self._c.llama_state_seq_get_size(ctx, slot.seq)
        if not size or size > cache.budget:
            return
        state = (ctypes.c_uint8 * size)()
        if self._c.llama_state_seq_get_data(ctx, state, size, slot.seq) == size:
            cache.put(slot.cached, state, size, slot.scope)

    def _restore(self, slot: _Slot, tokens: list[int], state: Any, shared: int) -> int:
        """Load a cached state into the slot; how many prompt tokens it now holds."""
        if self._c.llama_state_seq_set_data(self._ctx.ctx, state, len(state), slot.seq):
            slot.cached = list(tokens)
            return shared
        # llama.cpp found no room (a unified KV pool can be full): evaluate from scratch.
        self._c.llama_memory_seq_rm(self._mem, slot.seq, 0, -1)
        slot.cached = []
        return 0

    def _sampler(self, job: Job) -> Any:
        from llama_cpp import _internals
        from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

        p = job.params
        if p.logit_bias:
            raise UnsupportedParameter(
                "the llamacpp engine does not support logit_bias", param="logit_bias"
            )
        smpl = _internals.LlamaSampler()
        if p.presence_penalty or p.frequency_penalty:
            smpl.add_penalties(self._n_vocab, 64, 1.0, p.frequency_penalty, p.presence_penalty)
        if p.json_schema is not None:
            try:
                grammar = LlamaGrammar.from_json_schema(json.dumps(p.json_schema), verbose=False)
            except Exception as exc:
                raise UnsupportedParameter(
                    f"this JSON schema cannot be enforced: {exc}", param="response_format"
                ) from exc
            smpl.add_grammar(self._model, grammar)
        elif p.json_object:
            smpl.add_grammar(self._model, LlamaGrammar.from_string(JSON_GBNF, verbose=False))
        if p.temperature == 0:
            smpl.add_greedy()
        else:
            if p.top_p < 1.0:
                smpl.add_top_p(p.top_p, 1)
            smpl.add_temp(p.temperature)
            smpl.add_dist(p.seed if p.seed is not None else random.randrange(2**31))
        return smpl

    def _step(self) -> None:
        # Sequences with the same adapter (or none) decode together, in one llama_decode.
        groups: dict[str | None, list[_Slot]] = {}
        for slot in self._slots:
            job = slot.job
            if job is None:
                continue
            if job.cancelled.is_set():
                self._finish(slot, "stop")
                continue
            groups.setdefault(slot.adapter, []).append(slot)
        if len(groups) <= 1:  # the usual case: one adapter (or none) in use
            for adapter, group in groups.items():
                self._decode(group, adapter)
            return
        self._turn = next_turn(groups, self._turn, self.config.adapter_turn)
        self._decode(groups[self._turn[0]], self._turn[0])

    def _decode(self, slots: list[_Slot], adapter: str | None) -> None:
        c, batch = self._c, self._batch
        n = 0
        rows: list[tuple[_Slot, int]] = []  # slots to sample, with their batch row
        for slot in slots:
            if slot.pending or n >= self.config.n_batch:
                continue
            self._put(n, slot.last, len(slot.cached), slot.seq, True)
            slot.cached.append(slot.last)
            rows.append((slot, n))
            n += 1
        for slot in slots:  # prompts fill what the batch has left
            if not slot.pending or n >= self.config.n_batch:
                continue
            take = slot.pending[: self.config.n_batch - n]
            for i, tok in enumerate(take):
                last = i == len(take) - 1 and len(take) == len(slot.pending)
                self._put(n, tok, len(slot.cached), slot.seq, last)
                slot.cached.append(tok)
                if last:
                    rows.append((slot, n))
                n += 1
            slot.pending = slot.pending[len(take) :]
        if n == 0:
            return
        if adapter is not None:
            self._adapter(adapter)  # marks it recently used (busy adapters are never evicted)
        self._apply(adapter)
        batch.n_tokens = n
        rc = c.llama_decode(self._ctx.ctx, batch)
        self._steps += 1
        if rc != 0:
            for slot in slots:
                if slot.job is not None:
                    slot.job.emit(
                        EngineError(f"llama_decode failed with code {rc}", retryable=False)
                    )
                    self._release(slot, forget=True)
            return
        for slot, row in rows:
            self._sample(slot, row)

    def _put(self, i: int, token: int, pos: int, seq: int, logits: bool) -> None:
        b = self._batch
        b.token[i] = token
        b.pos[i] = pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq
        b.logits[i] = logits

    def _sample(self, slot: _Slot, row: int) -> None:
        job, text = slot.job, slot.text
        assert job is not None and text is not None
        tok = slot.sampler.sample(self._ctx, row)
        if self._c.llama_vocab_is_eog(self._vocab, tok):
            self._finish(slot, "stop")
            return
        slot.generated += 1
        piece = self._piece(tok)
        out = text.push(piece)
        lp = (
            self._logprob(row, tok, piece, job.params.top_logprobs)
            if job.params.top_logprobs is not None
            else None
        )
        if out or lp:
            job.emit(TokenOut(out, lp))
        if text.stopped:
            self._finish(slot, "stop")
        elif slot.generated >= job.params.max_tokens:
            self._finish(slot, "length")
        else:
            slot.last = tok

    def _finish(self, slot: _Slot, reason: FinishReason) -> None:
        job, text = slot.job, slot.text
        assert job is not None and text is not None
        if not job.cancelled.is_set():
            rest = text.flush()
            if rest:
                job.emit(TokenOut(rest))
            job.emit(Finished(reason, len(job.prompt), slot.generated))
        self._release(slot)

    def _release(self, slot: _Slot, forget: bool = False) -> None:
        slot.job = None
        slot.pending = []
        slot.text = None
        if slot.sampler is not None:
            slot.sampler.close()
            slot.sampler = None
        if forget:
            self._c.llama_memory_seq_rm(self._mem, slot.seq, 0, -1)
            slot.cached = []

    def _shutdown(self) -> None:
        for slot in self._slots:
            if slot.job is not None:
                slot.job.emit(EngineError("engine closed", retryable=True, status_code=503))
                self._release(slot)
        self._c.llama_batch_free(self._batch)
        self._ctx.close()
        if self._pool is not None:
            self._pool.free()
        self._model.close()

    # ---- tokens → text, logprobs -----------------------------------------------------------

    def _logprob(self, row: int, tok: int, piece: bytes, top: int) -> TokenLogprob:
        import numpy as np

        ptr = self._c.llama_get_logits_ith(self._ctx.ctx, row)
        logits = np.ctypeslib.as_array(ptr, shape=(self._n_vocab,)).astype(np.float64)
        shifted = logits - logits.max()
        logprobs = shifted - np.log(np.exp(shifted).sum())
        best: Any = np.argpartition(-logprobs, top)[:top] if top else []
        tops = sorted(
            (TopLogprob(token=self._piece_text(int(i)), logprob=float(logprobs[i])) for i in best),
            key=lambda t: -t.logprob,
        )
        return TokenLogprob(
            token=piece.decode("utf-8", errors="replace"),
            logprob=float(logprobs[tok]),
            bytes=list(piece),
            top_logprobs=tops,
        )

    def _piece_text(self, tok: int) -> str:
        return self._piece(tok).decode("utf-8", errors="replace")

    def _piece(self, tok: int) -> bytes:
        piece = self._pieces.get(tok)
        if piece is None:
            buf = self._piece_buf
            n = self._c.llama_token_to_piece(self._vocab, tok, buf, len(buf), 0, False)
            if n < 0:  # longer than the buffer
                buf = ctypes.create_string_buffer(-n)
                n = self._c.llama_token_to_piece(self._vocab, tok, buf, -n, 0, False)
            piece = self._pieces[tok] = buf.raw[:n]
        return piece


def use_extra_buffers(setting: Literal["auto", "on", "off"]) -> bool:
    """Whether to load weights into ggml's extra CPU buffers (see LlamaCppConfig)."""
    if setting != "auto":
        return setting == "on"
    return not (cpu_has_amx() and _build_has_amx())


def cpu_has_amx(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when the CPU advertises AMX integer tiles (Sapphire Rapids and newer Xeons)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    return any(
        line.startswith("flags") and "amx_int8" in line.split() for line in text.splitlines()
    )


def _build_has_amx() -> bool:
    """True when this llama.cpp was compiled with the AMX kernels (``-march=native`` on an
    AMX CPU does that)."""
    from llama_cpp import llama_cpp

    info = llama_cpp.llama_print_system_info().decode(errors="replace")
    return "AMX_INT8 = 1" in info


def _scope(cache_scope: str | None, adapter: str | None) -> str | None:
    return cache_scope if adapter is None else f"{cache_scope or ''}\x00lora:{adapter}"


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
