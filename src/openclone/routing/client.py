"""How OpenClone's own tools (distill, evaluate, the arena, drift watch) call a model by name.

They are clients of the router like any application: :class:`RouterClient` runs the
catalog's router in this process (the models load here, failover and least-busy routing
apply), :class:`HTTPClient` talks to a running OpenClone — or any OpenAI-compatible
server — over HTTP. Both take and return the shared OpenAI types of :mod:`openclone.schema`
and raise the errors of :mod:`openclone.errors` (``RateLimited`` on 429, a retryable
``EngineError`` on 5xx and connection failures), so callers retry the same way for both.
"""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel

from openclone.config import Settings
from openclone.engines.openai_upstream import OpenAIConfig, OpenAIEngine
from openclone.routing.router import Router
from openclone.schema import ChatCompletion, ChatCompletionRequest

__all__ = ["ChatClient", "HTTPClient", "RouterClient", "open_client"]


class ChatClient(Protocol):
    async def chat(self, req: ChatCompletionRequest) -> ChatCompletion: ...

    def models(self) -> list[str]:
        """Model names this client can reach (empty when it cannot tell)."""
        ...

    async def aclose(self) -> None: ...


class RouterClient:
    """The catalog's models, loaded in this process behind the router."""

    def __init__(self, router: Router) -> None:
        self.router = router

    @classmethod
    async def start(cls, settings: Settings) -> RouterClient:
        from openclone.routing.open import open_router

        return cls(await open_router(settings))

    async def chat(self, req: ChatCompletionRequest) -> ChatCompletion:
        shown, target = self.router.pin(req.model)
        routed = req if target == req.model else req.model_copy(update={"model": target})
        result, _ = await self.router.call(target, lambda engine: engine.chat(routed))
        result.model = shown
        return result

    def models(self) -> list[str]:
        return self.router.names()

    async def aclose(self) -> None:
        await self.router.close()


class HTTPClient:
    """A running OpenClone (or any OpenAI-compatible server) at ``base_url``."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 600.0) -> None:
        # The upstream engine already speaks the wire format and maps its errors.
        self._engine = _PassThrough(
            "*", OpenAIConfig(base_url=base_url, api_key=api_key, timeout=timeout)
        )

    async def chat(self, req: ChatCompletionRequest) -> ChatCompletion:
        return await self._engine.chat(req)

    def models(self) -> list[str]:
        return []

    async def aclose(self) -> None:
        await self._engine.close()


class _PassThrough(OpenAIEngine):
    """Sends each request's own model name instead of one configured name."""

    def _upstream_name(self, req: BaseModel) -> str:
        return str(getattr(req, "model", self.model_name))


async def open_client(
    settings: Settings, base_url: str | None = None, api_key: str | None = None, **_: Any
) -> ChatClient:
    """An HTTP client when ``base_url`` is given, else the catalog's router in process."""
    if base_url:
        return HTTPClient(base_url, api_key)
    return await RouterClient.start(settings)
