"""GGUF models in process through llama-cpp-python.

The model's own chat template (GGUF metadata) formats chats; JSON output and forced tool
calls are enforced with llama.cpp grammars; llama.cpp keeps the KV cache of the previous
prompt, so a conversation that grows turn by turn only evaluates its new tokens.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from openclone.engines.base import Capabilities
from openclone.engines.local import Finished, Job, LocalEngine, TokenOut
from openclone.engines.textstream import StopAwareText
from openclone.errors import ConfigError, UnsupportedParameter
from openclone.schema import TokenLogprob, TopLogprob

__all__ = ["LlamaCppConfig", "LlamaCppEngine"]


class LlamaCppConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_path: str | None = None  # None: the bundled SmolLM2-135M-Instruct
    n_ctx: int = 4096
    n_threads: int | None = None
    n_batch: int = 512
    n_gpu_layers: int = 0
    max_queue: int = 64
    chat_template: str | None = None  # overrides the GGUF's own


class LlamaCppEngine(LocalEngine):
    def __init__(self, model_name: str, config: LlamaCppConfig) -> None:
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        from openclone.config import bundled_model_path

        self.model_name = model_name
        self.max_queue = config.max_queue
        path = Path(config.model_path) if config.model_path else bundled_model_path()
        if not path.is_file():
            raise ConfigError(f"model {model_name!r}: GGUF file not found: {path}")
        self.path = path
        self._lib = llama_cpp
        self._llm = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=config.n_ctx,
            n_threads=config.n_threads or os.cpu_count() or 1,
            n_batch=config.n_batch,
            n_gpu_layers=config.n_gpu_layers,
            verbose=False,
        )
        template = config.chat_template or self._llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ConfigError(
                f"model {model_name!r}: the GGUF has no chat template; set chat_template"
            )
        eos = self._llm._model.token_get_text(self._llm.token_eos())
        bos_id = self._llm.token_bos()
        bos = self._llm._model.token_get_text(bos_id) if bos_id >= 0 else ""
        self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        self._n_vocab = self._llm.n_vocab()
        self._pieces: dict[int, bytes] = {}
        self._piece_buf = llama_cpp.ctypes.create_string_buffer(64)
        self.capabilities = Capabilities(
            streaming=True,
            completions=True,
            tools=True,
            json_schema=True,
            logprobs=True,
            adapters=False,
            max_context=config.n_ctx,
        )
        super().__init__()

    @classmethod
    def from_config(cls, model_name: str, params: dict[str, Any]) -> LlamaCppEngine:
        try:
            config = LlamaCppConfig(**params)
        except ValidationError as exc:
            raise ConfigError(f"model {model_name!r}: invalid llamacpp parameters: {exc}") from exc
        return cls(model_name, config)

    @property
    def n_ctx(self) -> int:
        return int(self._llm.n_ctx())

    def render_chat(self, messages: list[dict[str, Any]]) -> tuple[str, list[str]]:
        result = self._formatter(messages=messages)  # type: ignore[arg-type]
        stops = (
            result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        )
        return result.prompt, [s for s in stops if s]

    def tokenize(self, text: str) -> list[int]:
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def describe(self) -> dict[str, Any]:
        return {"engine": "llamacpp", "path": str(self.path), "n_ctx": self.n_ctx}

    def generate_sync(self, job: Job) -> None:
        from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

        p, llm, lib = job.params, self._llm, self._lib
        if p.logit_bias:
            raise UnsupportedParameter(
                "the llamacpp engine does not support logit_bias", param="logit_bias"
            )
        grammar = None
        if p.json_schema is not None:
            try:
                grammar = LlamaGrammar.from_json_schema(json.dumps(p.json_schema), verbose=False)
            except Exception as exc:
                raise UnsupportedParameter(
                    f"this JSON schema cannot be enforced: {exc}", param="response_format"
                ) from exc
        elif p.json_object:
            grammar = LlamaGrammar.from_string(JSON_GBNF, verbose=False)
        llm.set_seed(p.seed if p.seed is not None else random.randrange(2**31))
        text = StopAwareText(p.stop)
        vocab = llm._model.vocab
        n, finish = 0, "length"
        tokens = llm.generate(
            job.prompt,
            top_k=0,
            top_p=p.top_p,
            min_p=0.0,
            typical_p=1.0,
            temp=p.temperature,
            repeat_penalty=1.0,
            frequency_penalty=p.frequency_penalty,
            presence_penalty=p.presence_penalty,
            grammar=grammar,
        )
        try:
            for tok in tokens:
                if job.cancelled.is_set():
                    finish = "stop"
                    break
                if lib.llama_vocab_is_eog(vocab, tok):
                    finish = "stop"
                    break
                n += 1
                piece = self._piece(tok)
                out = text.push(piece)
                lp = (
                    self._logprob(tok, piece, p.top_logprobs)
                    if p.top_logprobs is not None
                    else None
                )
                if out or lp:
                    job.emit(TokenOut(out, lp))
                if text.stopped:
                    finish = "stop"
                    break
                if n >= p.max_tokens:
                    break
        finally:
            tokens.close()
        rest = text.flush()
        if rest:
            job.emit(TokenOut(rest))
        job.emit(Finished(finish, len(job.prompt), n))

    def _logprob(self, tok: int, piece: bytes, top: int) -> TokenLogprob:
        import numpy as np

        logits = np.ctypeslib.as_array(self._llm._ctx.get_logits(), shape=(self._n_vocab,))
        shifted = logits - logits.max()
        logprobs = shifted - np.log(np.exp(shifted).sum())
        best = np.argpartition(-logprobs, top)[:top] if top else []
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
            n = self._lib.llama_token_to_piece(self._llm._model.vocab, tok, buf, len(buf), 0, False)
            if n < 0:  # a piece longer than the buffer
                buf = self._lib.ctypes.create_string_buffer(-n)
                n = self._lib.llama_token_to_piece(self._llm._model.vocab, tok, buf, -n, 0, False)
            piece = self._pieces[tok] = bytes(buf[:n])
        return piece

    def close_sync(self) -> None:
        self._llm.close()
