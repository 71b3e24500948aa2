"""Hugging Face models in process through ``transformers``, with many LoRA adapters on one base.

The engine loads an HF model directory or a GGUF file (which transformers dequantizes) and
generates with its own token loop over the KV cache, so sampling, penalties, stop strings,
logprobs and cancellation follow the same OpenAI semantics as the llama.cpp engine. Every
configured PEFT adapter is loaded once onto the one base; a request for ``BASE:ADAPTER``
runs with that adapter active and one for ``BASE`` with all adapters disabled, the way a
company serves several fine-tunes of a model from one copy of its weights. One request
runs at a time (no batching): this engine is for adapters and training parity, not speed.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import threading
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from openclone.engines.base import Capabilities
from openclone.engines.local import Finished, GenParams, Job, LocalEngine, TokenOut
from openclone.engines.textstream import StopAwareText
from openclone.errors import ConfigError, InvalidRequestError
from openclone.schema import FinishReason, TokenLogprob, TopLogprob

__all__ = ["TransformersConfig", "TransformersEngine"]

_ADAPTER_NAME = re.compile(r"[A-Za-z0-9_-]+")  # PEFT keys modules by name: no dots
_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")


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
        self._adapters: dict[str, str] = {}
        # generate_sync holds _model_lock for a whole request; a waiting loader clears
        # _no_loader so the worker yields the lock instead of taking it again at once.
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
        """Add a PEFT adapter while serving; blocks until the running request ends.

        Call it from a thread (``asyncio.to_thread``), never on the event loop.
        """
        with self._loader_lock:
            self._no_loader.clear()
            try:
                with self._model_lock:
                    self._attach(name, path)
            finally:
                self._no_loader.set()

    def _attach(self, name: str, path: str) -> None:
        from peft import PeftModel

        if not _ADAPTER_NAME.fullmatch(name):
            raise ConfigError(f"model {self.model_name!r}: bad adapter name {name!r}")
        if name in self._adapters:
            raise ConfigError(f"model {self.model_name!r}: adapter {name!r} is already loaded")
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
        self._adapters[name] = path

    def _adapter_scope(self, adapter: str | None) -> AbstractContextManager[Any]:
        if not self._adapters:
            return nullcontext()
        if adapter is None:
            # The plain model name means the base weights: every adapter off for this request.
            scope: AbstractContextManager[Any] = self._model.disable_adapter()
            return scope
        self._model.set_adapter(adapter, inference_mode=True)
        return nullcontext()

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
            **self.load(),
        }

    def generate_sync(self, job: Job) -> None:
        import torch

        if not job.prompt:
            raise InvalidRequestError("the prompt is empty", param="prompt")
        self._no_loader.wait()
        with self._model_lock, self._adapter_scope(job.params.adapter), torch.inference_mode():
            self._generate(job)

    # ---- the token loop --------------------------------------------------------------------

    def _generate(self, job: Job) -> None:
        import torch

        p = job.params
        gen = torch.Generator(device=self.device)
        if p.seed is not None:
            gen.manual_seed(p.seed)
        else:
            gen.seed()
        bias = self._bias(p)
        counts = torch.zeros(self._n_vocab, device=self.device)
        text = StopAwareText(p.stop)
        detok = _Detokenizer(self._tok)
        ids = torch.tensor([job.prompt], device=self.device)
        cache: Any = None
        generated = 0
        reason: FinishReason = "length"
        while generated < p.max_tokens:
            if job.cancelled.is_set():
                return
            out = self._model(input_ids=ids, use_cache=True, **{self._cache_kw: cache})
            cache = getattr(out, self._cache_kw)
            logits = out.logits[0, -1].float()
            tok = self._sample(logits, p, bias, counts, gen)
            if tok in self._eos:
                reason = "stop"
                break
            generated += 1
            counts[tok] += 1
            piece = text.push(detok.push(tok).encode())
            lp = self._logprob(logits, tok, p.top_logprobs) if p.top_logprobs is not None else None
            if piece or lp:
                job.emit(TokenOut(piece, lp))
            if text.stopped:
                reason = "stop"
                break
            ids = torch.tensor([[tok]], device=self.device)
        if job.cancelled.is_set():
            return
        rest = text.push(detok.flush().encode()) + text.flush()
        if rest:
            job.emit(TokenOut(rest))
        job.emit(Finished(reason, len(job.prompt), generated))

    def _bias(self, p: GenParams) -> Any:
        import torch

        if not p.logit_bias:
            return None
        if bad := [k for k in p.logit_bias if not 0 <= k < self._n_vocab]:
            raise InvalidRequestError(
                f"logit_bias token id {bad[0]} is outside the vocabulary (0..{self._n_vocab - 1})",
                param="logit_bias",
            )
        bias = torch.zeros(self._n_vocab, device=self.device)
        for k, v in p.logit_bias.items():
            bias[k] = v
        return bias

    def _sample(self, logits: Any, p: GenParams, bias: Any, counts: Any, gen: Any) -> int:
        import torch

        # OpenAI's penalties: subtract per occurrence (frequency) and once if seen (presence).
        if bias is not None:
            logits = logits + bias
        if p.frequency_penalty or p.presence_penalty:
            logits = logits - p.frequency_penalty * counts - p.presence_penalty * (counts > 0)
        if p.temperature == 0:
            return int(logits.argmax())
        probs = torch.softmax(logits / p.temperature, dim=-1)
        if p.top_p < 1.0:
            sorted_p, order = probs.sort(descending=True)
            # Keep the smallest prefix whose mass reaches top_p (always the top token).
            drop = (sorted_p.cumsum(0) - sorted_p) >= p.top_p
            drop[0] = False
            sorted_p[drop] = 0
            probs = torch.zeros_like(probs).scatter_(0, order, sorted_p)
        return int(torch.multinomial(probs, 1, generator=gen))

    def _logprob(self, logits: Any, tok: int, top: int) -> TokenLogprob:
        import torch

        logprobs = torch.log_softmax(logits, dim=-1)
        tops: list[TopLogprob] = []
        if top:
            values, indices = torch.topk(logprobs, top)
            tops = [
                TopLogprob(token=b.decode("utf-8", "replace"), logprob=v, bytes=list(b))
                for v, b in zip(values.tolist(), map(self._piece, indices.tolist()), strict=True)
            ]
        piece = self._piece(tok)
        return TokenLogprob(
            token=piece.decode("utf-8", "replace"),
            logprob=float(logprobs[tok]),
            bytes=list(piece),
            top_logprobs=tops,
        )

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


class _Detokenizer:
    """Text of a growing token list, decoded over a sliding window.

    Decoding each token alone loses a SentencePiece word's leading space and splits UTF-8
    characters, so the window's text is decoded twice and only the new part emitted.
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer
        self._ids: list[int] = []
        self._prefix = 0  # window start: context that keeps the decoder's spacing right
        self._read = 0  # tokens up to here have been emitted

    def push(self, tok: int) -> str:
        self._ids.append(tok)
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self._ids)
            return after[len(before) :]
        return ""  # an incomplete character: wait for its next byte

    def flush(self) -> str:
        before = self._decode(self._ids[self._prefix : self._read])
        return self._decode(self._ids[self._prefix :])[len(before) :]

    def _decode(self, ids: list[int]) -> str:
        text: str = self._tok.decode(ids, skip_special_tokens=True)
        return text


def _ids(value: int | list[int] | None) -> list[int]:
    return [] if value is None else [value] if isinstance(value, int) else list(value)


def _byte_chars() -> dict[str, int]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {c: b for b, c in bytes_to_unicode().items()}
