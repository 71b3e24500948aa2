"""Hugging Face models in process through ``transformers``, with many LoRA adapters on one base.

The engine loads an HF model directory or a GGUF file (which transformers dequantizes) and
runs its own token loop over the KV cache, so sampling, penalties, stop strings, logprobs and
cancellation follow the same OpenAI semantics as the llama.cpp engine. Every configured PEFT
adapter is loaded once onto the one base. Requests are batched continuously
(:mod:`openclone.engines.transformers_batch`): up to ``max_batch`` sequences decode in one
forward pass per step, each with its own adapter (``BASE:ADAPTER``) or the base weights
(``BASE``), and new requests join between steps — the way a company serves several
fine-tunes of a model from one copy of its weights. This is the GPU path for PEFT students;
on CPU the llama.cpp engine, with adapters converted to GGUF, is faster.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import threading
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from openclone.engines.base import Capabilities
from openclone.engines.local import Job, LocalEngine
from openclone.engines.transformers_batch import Batcher
from openclone.errors import ConfigError, InvalidRequestError, ModelNotFound

__all__ = ["TransformersConfig", "TransformersEngine"]

log = logging.getLogger("openclone.engines.transformers")

_ADAPTER_NAME = re.compile(r"[A-Za-z0-9_-]+")  # PEFT keys modules by name: no dots
_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")
# Kinds of forward pass besides "every row on adapter NAME" (adapter names have no "<").
_BASE, _MIXED, _UNKNOWN = "<base>", "<mixed>", "<unknown>"


class TransformersConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_path: str | None = None  # HF directory or .gguf file; None: the bundled SmolLM2
    gguf_file: str | None = Field(default=None, description="GGUF file inside model_path")
    device: str = Field(default="auto", description="auto: cuda when available, else cpu")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    adapters: dict[str, str] = Field(
        default_factory=dict, description="adapter name -> PEFT adapter directory"
    )
    n_ctx: int | None = Field(default=None, ge=64, description="default: the model's, at most 8192")
    n_threads: int | None = Field(
        default=None, ge=1, description="torch CPU threads, for the whole process; None: torch's"
    )
    max_queue: int = Field(default=64, ge=1)
    max_batch: int = Field(
        default=8, ge=1, le=1024, description="sequences decoded together in one forward pass"
    )


class TransformersEngine(LocalEngine):
    def __init__(self, model_name: str, config: TransformersConfig) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from openclone.config import bundled_model_path

        self.model_name = model_name
        self.max_queue = config.max_queue
        self.config = config
        path = Path(config.model_path) if config.model_path else bundled_model_path()
        gguf = config.gguf_file
        if path.is_file() and path.suffix == ".gguf":
            path, gguf = path.parent, path.name
        if not path.is_dir() or (gguf and not (path / gguf).is_file()):
            raise ConfigError(f"model {model_name!r}: no HF model directory or GGUF file at {path}")
        self.path = path / gguf if gguf else path
        device = config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            self.device = torch.device(device)
        except RuntimeError as exc:
            raise ConfigError(f"model {model_name!r}: bad device {device!r}: {exc}") from exc
        dtype = config.dtype
        if dtype == "auto":
            dtype = "bfloat16" if self.device.type == "cuda" else "float32"
        self.dtype: torch.dtype = getattr(torch, dtype)
        if config.n_threads:
            # Fewer threads than cores when others share them: each op waits for its slowest
            # thread, so one descheduled thread stalls every layer.
            torch.set_num_threads(config.n_threads)
        # Offline always; for GGUF, transformers dequantizes to self.dtype.
        where: dict[str, Any] = {"local_files_only": True, **({"gguf_file": gguf} if gguf else {})}
        try:
            self._tok: Any = AutoTokenizer.from_pretrained(str(path), **where)
            model: Any = AutoModelForCausalLM.from_pretrained(str(path), dtype=self.dtype, **where)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"model {model_name!r}: transformers cannot load {path}: {exc}"
            ) from exc
        self._model: Any = model.to(self.device).eval()
        if not self._tok.chat_template:
            raise ConfigError(f"model {model_name!r}: the tokenizer has no chat template")
        self._n_ctx = config.n_ctx or min(model.config.max_position_embeddings, 8192)
        self._n_vocab: int = model.config.vocab_size
        # transformers 5 renamed past_key_values to cache (the old name warns, then goes away).
        forward = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in forward else "past_key_values"
        # A prefill needs the logits of its last position only, not a vocabulary row per token.
        keep = ("logits_to_keep", "num_logits_to_keep")  # the name before transformers 4.50
        self._keep_kw = next((k for k in keep if k in forward), None)
        self._eos = {self._tok.eos_token_id, *_ids(model.generation_config.eos_token_id)} - {None}
        # Chat templates usually write the BOS themselves; raw completion prompts need one
        # only when the tokenizer would add it.
        probe = self._tok("a", add_special_tokens=True).input_ids
        bos = self._tok.bos_token_id
        self._bos: int | None = bos if bos is not None and probe[:1] == [bos] else None
        self._token_bytes: dict[int, bytes] = {}
        vocab = self._tok.get_vocab()
        # GPT-2 style byte-level BPE spells every byte as a character, space as "Ġ".
        self._byte_chars = _byte_chars() if "Ġ" in vocab and "Ċ" in vocab else None
        self._adapters: dict[str, str] = {}  # offered to requests: name -> directory
        self._peft: set[str] = set()  # loaded in the PEFT model (model lock held)
        self._mode = _UNKNOWN  # which kind of pass the PEFT model is set up for
        # The scheduler holds _model_lock for one forward pass; a waiting loader clears
        # _no_loader so the scheduler yields the lock instead of taking it again at once.
        self._model_lock = threading.Lock()
        self._loader_lock = threading.Lock()
        self._no_loader = threading.Event()
        self._no_loader.set()
        for adapter, adapter_path in config.adapters.items():
            self._attach(adapter, adapter_path)
        self.capabilities = Capabilities(
            streaming=True,
            completions=True,
            tools=True,
            json_schema=False,
            logprobs=True,
            adapters=True,
            max_context=self._n_ctx,
        )
        padded = _paddable(model.config)
        if not padded and config.max_batch > 1:
            log.warning(
                "model %r: its KV cache is not plain full attention (sliding-window or "
                "linear layers) or transformers is older than 4.56; serving one request at a time",
                model_name,
            )
        self._batcher = Batcher(
            forward=self._forward,
            tokenizer=self._tok,
            piece=self._piece,
            device=self.device,
            n_vocab=self._n_vocab,
            eos=self._eos,
            max_batch=config.max_batch,
            padded=padded,
            tidy=self._delete_retired,
        )
        super().__init__()

    @classmethod
    def from_config(cls, model_name: str, params: dict[str, Any]) -> TransformersEngine:
        try:
            config = TransformersConfig(**params)
        except ValidationError as exc:
            raise ConfigError(
                f"model {model_name!r}: invalid transformers parameters: {exc}"
            ) from exc
        return cls(model_name, config)

    # ---- adapters ----------------------------------------------------------------------

    def adapter_names(self) -> list[str]:
        return list(self._adapters)

    async def add_adapter(self, name: str, path: str) -> None:
        await asyncio.to_thread(self.load_adapter, name, path)

    def load_adapter(self, name: str, path: str) -> None:
        """Add a PEFT adapter while serving; waits for the forward pass under way, if any.

        Call it from a thread (``asyncio.to_thread``), never on the event loop.
        """
        with self._loader_lock:
            self._no_loader.clear()
            try:
                with self._model_lock:
                    self._attach(name, path)
                self._removed.discard(name)
            finally:
                self._no_loader.set()

    async def remove_adapter(self, name: str) -> None:
        """Stop offering ``name``; the scheduler deletes it from the PEFT model once no
        sequence in the batch uses it."""
        if self._adapters.pop(name, None) is None:
            return
        self._retire_adapter(name)

    def _delete_retired(self) -> None:
        """Delete removed adapters no sequence decodes with (scheduler thread, between steps)."""
        self._retired.drain(self._batcher.adapters_in_use, self._adapters, self._delete)

    def _delete(self, name: str) -> None:
        with self._model_lock:
            self._model.delete_adapter(name)
            self._peft.discard(name)
            self._mode = _UNKNOWN

    def _attach(self, name: str, path: str) -> None:
        from peft import PeftModel

        if not _ADAPTER_NAME.fullmatch(name):
            raise ConfigError(f"model {self.model_name!r}: bad adapter name {name!r}")
        if name in self._adapters:
            raise ConfigError(f"model {self.model_name!r}: adapter {name!r} is already loaded")
        if name in self._peft:  # removed, not deleted yet (a request still uses it)
            self._adapters[name] = path
            return
        try:
            if isinstance(self._model, PeftModel):
                self._model.load_adapter(path, adapter_name=name)
            else:
                self._model = PeftModel.from_pretrained(self._model, path, adapter_name=name)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ConfigError(
                f"model {self.model_name!r}: cannot load adapter {name!r} from {path}: {exc}"
            ) from exc
        self._model.eval()
        self._peft.add(name)
        self._adapters[name] = path
        self._mode = _UNKNOWN  # new LoRA layers start enabled: set the state again

    # ---- LocalEngine primitives ------------------------------------------------------------

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    def render_chat(self, messages: list[dict[str, Any]]) -> tuple[str, list[str]]:
        from jinja2 import TemplateError

        try:
            text = self._tok.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            )
        except TemplateError as exc:
            raise InvalidRequestError(
                f"the chat template rejects these messages: {exc}", param="messages"
            ) from exc
        eos = self._tok.eos_token
        return text, [eos] if eos else []

    def tokenize(self, text: str) -> list[int]:
        ids: list[int] = self._tok(text, add_special_tokens=False).input_ids
        if self._bos is not None and ids[:1] != [self._bos]:
            ids.insert(0, self._bos)
        return ids

    def describe(self) -> dict[str, Any]:
        return {
            "engine": "transformers",
            "path": str(self.path),
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "n_ctx": self.n_ctx,
            "adapters": self.adapter_names(),
            "max_batch": self._batcher.max_batch,
            **self.load(),
        }

    def progress(self) -> int:
        """Forward passes since start (any thread may read it)."""
        return self._batcher.steps

    def load(self) -> dict[str, Any]:
        active = self._batcher.active
        return {"busy": active > 0, "active": active, "queued": self._jobs.qsize()}

    def generate_sync(self, job: Job) -> None:  # pragma: no cover - the batcher replaces it
        raise NotImplementedError("TransformersEngine schedules jobs in _work")

    # ---- the batch -------------------------------------------------------------------------

    def _work(self) -> None:
        self._batcher.run(self._jobs)
        self.close_sync()

    def _forward(
        self, ids: Any, adapters: list[str | None], mask: Any, positions: Any, cache: Any
    ) -> tuple[Any, Any]:
        """One forward pass (scheduler thread): last-position logits as float32, the cache."""
        kw: dict[str, Any] = {"input_ids": ids, "use_cache": True, self._cache_kw: cache}
        if mask is not None:
            kw["attention_mask"] = mask
            kw["position_ids"] = positions
        if self._keep_kw is not None:
            kw[self._keep_kw] = 1
        self._no_loader.wait()
        with self._model_lock:
            gone = {a for a in adapters if a} - self._peft
            if gone:  # removed (archived) while the request waited in the queue
                raise ModelNotFound(
                    f"The model '{gone.pop()}' does not exist: model {self.model_name!r} "
                    "no longer serves that adapter",
                    param="model",
                )
            if self._peft:
                kw.update(self._adapter_state(adapters))
            out = self._model(**kw)
        return out.logits[:, -1].float(), getattr(out, self._cache_kw)

    def _adapter_state(self, adapters: list[str | None]) -> dict[str, Any]:
        """Put the PEFT model in the state this pass needs (model lock held); its kwargs.

        A pass whose rows all use one adapter, or all the base, runs PEFT's plain path
        (measured on CPU, batch of 8: 15-20% faster per step than mixed-batch routing, whose
        per-layer hooks and row gathers cost even when every row goes the same way); a mixed
        pass routes each row through its own adapter with ``adapter_names``. Switching costs
        a walk over the model's modules, so it happens only when the kind of pass changes.
        """
        kinds = {a or _BASE for a in adapters}
        mode = kinds.pop() if len(kinds) == 1 else _MIXED
        if mode != self._mode:
            lora = self._model.base_model
            if mode == _BASE:
                lora.disable_adapter_layers()
            else:
                if self._mode in (_BASE, _UNKNOWN):
                    lora.enable_adapter_layers()
                if mode != _MIXED and self._model.active_adapter != mode:
                    self._model.set_adapter(mode, inference_mode=True)
            self._mode = mode
        if mode == _MIXED:
            return {"adapter_names": [a or "__base__" for a in adapters]}
        return {}

    def _piece(self, tok: int) -> bytes:
        """The token's own bytes; decoding it alone would lose spaces and split characters."""
        piece = self._token_bytes.get(tok)
        if piece is None:
            raw = self._tok.convert_ids_to_tokens(tok)
            if self._byte_chars is not None and all(c in self._byte_chars for c in raw):
                piece = bytes(self._byte_chars[c] for c in raw)
            elif m := _BYTE_TOKEN.fullmatch(raw):  # SentencePiece byte fallback
                piece = bytes([int(m[1], 16)])
            elif "▁" in raw:  # SentencePiece's visible space
                piece = raw.replace("▁", " ").encode()
            else:
                piece = self._tok.decode([tok]).encode()
            self._token_bytes[tok] = piece
        return piece


def _ids(value: int | list[int] | None) -> list[int]:
    return [] if value is None else [value] if isinstance(value, int) else list(value)


def _byte_chars() -> dict[str, int]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {c: b for b, c in bytes_to_unicode().items()}


def _paddable(config: Any) -> bool:
    """Whether the model's own KV cache is plain full attention in every layer, which the
    batch can pad and stack (transformers' layered ``DynamicCache``, 4.56 and later)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    try:
        layers = DynamicCache(config=config).layers
    except (TypeError, AttributeError):  # an older transformers
        return False
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)
