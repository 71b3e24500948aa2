"""The engine contract.

An engine turns OpenAI-shaped requests into OpenAI-shaped responses. Every backend —
llama.cpp in process, transformers + PEFT, any OpenAI-compatible upstream — implements
:class:`Engine`, and the router only ever talks to this protocol.

Rules every engine follows:

* The event loop never blocks: blocking work (llama.cpp, torch) runs in a worker thread
  or process behind a bounded queue. A full queue raises :class:`~openclone.errors.RateLimited`.
* An engine is built by ``from_config(model_name, params)`` (its catalog entry's params);
  bad params raise :class:`~openclone.errors.ConfigError`. Engines that run native model
  code set ``runs_native_code = True`` and are then served from a supervised worker
  process (:mod:`openclone.engines.supervised`).
* ``stream()`` returns an async generator. The caller owns it: when the client goes away the
  caller stops iterating and calls ``aclose()`` on it (which is why the type is a generator,
  not any iterator); the engine must then stop generating and free the slot promptly
  (cancellation is not an error).
* Errors are OpenClone errors. Anything raised before the first chunk with
  ``EngineError(retryable=True)`` (connection refused, replica crashed) lets the router try
  another replica; a request the client got wrong is an ``InvalidRequestError`` and is not retried.
* What the engine cannot do (see :class:`Capabilities`) is refused with
  :class:`~openclone.errors.UnsupportedParameter`, never silently ignored.
* ``close()`` releases the model or connections; it is called once, at shutdown.
* An engine whose ``capabilities.adapters`` is true also implements :class:`AdapterHost`;
  one whose ``capabilities.embeddings`` is true implements :class:`Embedder` (the gateway
  answers 400 for a model without it).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from openclone.schema import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    EmbeddingList,
    EmbeddingRequest,
)

__all__ = ["AdapterHost", "Capabilities", "Embedder", "Engine"]


@dataclass(frozen=True)
class Capabilities:
    streaming: bool = True
    completions: bool = True
    tools: bool = False
    json_schema: bool = False
    logprobs: bool = False
    adapters: bool = False
    max_context: int | None = None
    embeddings: bool = False


@runtime_checkable
class Engine(Protocol):
    capabilities: Capabilities

    @classmethod
    def from_config(cls, model_name: str, params: dict[str, Any]) -> Engine:
        """Build the engine serving catalog model ``model_name`` from its params."""
        ...

    async def chat(self, req: ChatCompletionRequest) -> ChatCompletion: ...

    def stream(self, req: ChatCompletionRequest) -> AsyncGenerator[ChatCompletionChunk, None]: ...

    async def complete(self, req: CompletionRequest) -> Completion: ...

    def stream_complete(self, req: CompletionRequest) -> AsyncGenerator[Completion, None]: ...

    async def health(self) -> bool:
        """True when the engine can take requests; cheap, called by the router's prober."""
        ...

    def describe(self) -> dict[str, Any]:
        """A few facts for /v1/models and logs (never secrets)."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class AdapterHost(Protocol):
    """An engine that serves LoRA adapters on its base (``capabilities.adapters``)."""

    def adapter_names(self) -> list[str]:
        """Adapters a request may name as ``BASE:ADAPTER`` or by the adapter's own name."""
        ...

    async def add_adapter(self, name: str, path: str) -> None:
        """Load the PEFT adapter at ``path`` as ``name`` while serving."""
        ...

    async def remove_adapter(self, name: str) -> None:
        """Stop serving ``name`` (its registry versions were archived); unknown names are
        ignored. New requests for it are refused at once; requests already decoding with
        it finish on its weights, which are freed after them."""
        ...


@runtime_checkable
class Embedder(Protocol):
    """An engine that embeds text (``capabilities.embeddings``).

    ``embed`` answers every input in order with float vectors (the gateway encodes base64);
    a ``dimensions`` the model cannot give is an ``UnsupportedParameter``.
    """

    async def embed(self, req: EmbeddingRequest) -> EmbeddingList: ...
