"""Embeddings from a GGUF model: a second llama.cpp context on the weights already loaded.

Why a second context and not the generation one: a context built with ``embeddings`` and a
pooling type hands back pooled hidden states instead of logits, so it cannot also decode
the scheduler's sequences. It shares the model's weights (no second copy in memory), is
created on the first embeddings request (a server that never embeds pays nothing), holds
one sequence of at most ``n_ctx`` tokens (which bounds its KV and compute buffers), and is
used by one thread at a time, beside the generation scheduler.

A vector is the mean of the last hidden states over the input's tokens, L2-normalised, so a
dot product is the cosine similarity, as with OpenAI's embeddings. A chat model's vectors
are weaker than a trained embedding model's, but the quick start needs no download.
"""

from __future__ import annotations

import threading
from typing import Any

from openclone.errors import ContextLengthExceeded, EngineError, InvalidRequestError

__all__ = ["LlamaEmbedder"]


class LlamaEmbedder:
    def __init__(self, model: Any, n_ctx: int, n_threads: int) -> None:
        self._model = model  # llama_cpp._internals.LlamaModel, owned by the engine
        self.n_embd: int = model.n_embd()
        self.n_ctx = min(n_ctx, model.n_ctx_train() or n_ctx)
        self._n_vocab: int = model.n_vocab()
        self._threads = n_threads
        self._ctx: Any = None
        self._batch: Any = None
        self._lock = threading.Lock()

    def embed(self, inputs: list[str | list[int]]) -> tuple[list[list[float]], int]:
        """The vector of each input and the number of tokens read (blocking)."""
        import numpy as np

        tokens = [self._tokens(x, i) for i, x in enumerate(inputs)]  # refuse before any work
        out: list[list[float]] = []
        with self._lock:
            ctx, batch = self._open()
            for toks in tokens:
                ctx.kv_cache_clear()
                batch.reset()
                batch.add_sequence(toks, 0, True)  # every token is an output when pooling
                try:
                    ctx.decode(batch)
                except RuntimeError as exc:
                    raise EngineError(f"embedding failed: {exc}") from exc
                ptr = ctx.get_embeddings_seq(0)
                vec = np.ctypeslib.as_array(ptr, shape=(self.n_embd,)).astype(np.float64)
                norm = float(np.linalg.norm(vec))
                out.append((vec / norm if norm else vec).tolist())
        return out, sum(len(t) for t in tokens)

    def _tokens(self, item: str | list[int], index: int) -> list[int]:
        if isinstance(item, str):
            # Special tokens as the model adds them (a BOS where it wants one); text that
            # looks like a special token stays text.
            toks = list(self._model.tokenize(item.encode("utf-8"), add_bos=True, special=False))
        else:
            bad = [t for t in item if not 0 <= t < self._n_vocab]
            if bad:
                raise InvalidRequestError(
                    f"input[{index}] holds token {bad[0]}, outside this model's vocabulary "
                    f"of {self._n_vocab}",
                    param="input",
                )
            toks = list(item)
        if not toks:
            raise InvalidRequestError(f"input[{index}] has no tokens to embed", param="input")
        if len(toks) > self.n_ctx:
            raise ContextLengthExceeded(
                f"input[{index}] has {len(toks)} tokens; this model embeds at most "
                f"{self.n_ctx} (llamacpp param embed_n_ctx)",
                param="input",
            )
        return toks

    def _open(self) -> tuple[Any, Any]:
        if self._ctx is None:
            from llama_cpp import _internals, llama_cpp

            params = llama_cpp.llama_context_default_params()
            # One sequence, decoded in one micro-batch: llama.cpp pools a sequence only
            # when all of its tokens are in the same ubatch.
            params.n_ctx = params.n_batch = params.n_ubatch = self.n_ctx
            params.n_seq_max = 1
            params.embeddings = True
            params.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_MEAN
            params.n_threads = params.n_threads_batch = self._threads
            params.no_perf = True
            self._ctx = _internals.LlamaContext(model=self._model, params=params, verbose=False)
            self._batch = _internals.LlamaBatch(
                n_tokens=self.n_ctx, embd=0, n_seq_max=1, verbose=False
            )
        return self._ctx, self._batch

    def close(self) -> None:
        """Free the context (before the model it uses is freed)."""
        with self._lock:
            if self._batch is not None:
                self._batch.close()
            if self._ctx is not None:
                self._ctx.close()
            self._ctx = self._batch = None
