"""Any OpenAI-compatible server as an engine: OpenAI itself, vLLM, TGI, Ollama,
llama.cpp's server, another OpenClone.

One class, configured per catalog entry (base URL, key, upstream model name), not a
subclass per provider. Requests are forwarded with unknown fields intact, so a proxied
closed API keeps every feature the client uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from openclone.engines.base import Capabilities
from openclone.errors import (
    APIError,
    AuthenticationError,
    ConfigError,
    ContextLengthExceeded,
    EngineError,
    InvalidRequestError,
    ModelNotFound,
    PermissionDenied,
)
from openclone.schema import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
)

__all__ = ["OpenAIConfig", "OpenAIEngine"]

T = TypeVar("T", bound=BaseModel)
_DRAIN_TIMEOUT = 1.0  # seconds an upstream may take to end its body after "[DONE]"


async def _drain(lines: AsyncIterator[str]) -> None:
    async for _ in lines:
        pass


class OpenAIConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str = "https://api.openai.com/v1"
    api_key: str | None = None
    api_key_env: str | None = None  # read the key from this environment variable
    model: str | None = None  # the upstream's name for the model; default: the catalog name
    timeout: float = 600.0
    connect_timeout: float = 5.0
    max_connections: int = 256
    headers: dict[str, str] = {}
    max_context: int | None = None


class OpenAIEngine:
    def __init__(self, model_name: str, config: OpenAIConfig) -> None:
        self.model_name = model_name
        self.upstream_model = config.model or model_name
        self.base_url = config.base_url.rstrip("/")
        key = config.api_key or (os.environ.get(config.api_key_env) if config.api_key_env else None)
        headers = dict(config.headers)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(config.timeout, connect=config.connect_timeout),
            limits=httpx.Limits(
                max_connections=config.max_connections,
                max_keepalive_connections=config.max_connections,
            ),
        )
        self._urls: dict[str, httpx.URL] = {}
        self.capabilities = Capabilities(
            streaming=True,
            completions=True,
            tools=True,
            json_schema=True,
            logprobs=True,
            adapters=False,
            max_context=config.max_context,
        )

    @classmethod
    def from_config(cls, model_name: str, params: dict[str, Any]) -> OpenAIEngine:
        try:
            config = OpenAIConfig(**params)
        except ValidationError as exc:
            raise ConfigError(f"model {model_name!r}: invalid openai parameters: {exc}") from exc
        return cls(model_name, config)

    def _url(self, path: str) -> httpx.URL:
        # An absolute URL object skips httpx's parse-and-merge with base_url, a third of
        # what building a request costs.
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = httpx.URL(self.base_url + path)
        return url

    def _body(self, req: BaseModel) -> dict[str, Any]:
        body = req.model_dump(exclude_none=True, by_alias=True, exclude_unset=True)
        body["model"] = self.upstream_model
        return body

    async def _post(self, path: str, req: BaseModel, cls: type[T]) -> T:
        try:
            resp = await self._client.post(self._url(path), json=self._body(req))
        except httpx.HTTPError as exc:
            raise _transport_error(self.base_url, exc) from exc
        if resp.status_code != 200:
            raise _status_error(resp.status_code, resp.content)
        try:
            out = cls.model_validate_json(resp.content)
        except ValidationError as exc:
            raise EngineError(f"upstream {self.base_url} sent a malformed reply: {exc}") from exc
        out.model = getattr(req, "model", self.model_name)  # type: ignore[attr-defined]
        return out

    async def _stream(self, path: str, req: BaseModel, cls: type[T]) -> AsyncIterator[T]:
        body = self._body(req)
        body["stream"] = True
        client_model = getattr(req, "model", self.model_name)
        try:
            async with self._client.stream("POST", self._url(path), json=body) as resp:
                if resp.status_code != 200:
                    raise _status_error(resp.status_code, await resp.aread())
                lines = resp.aiter_lines()
                async for line in lines:
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        # Read the body to its end (the chunked terminator is all that is
                        # left), or httpx closes the connection instead of pooling it and
                        # the next request pays for a new TCP connection.
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(_drain(lines), _DRAIN_TIMEOUT)
                        return
                    try:
                        chunk = cls.model_validate_json(data)
                    except ValidationError as exc:
                        raise EngineError(
                            f"upstream {self.base_url} sent a malformed stream chunk: {exc}"
                        ) from exc
                    chunk.model = client_model  # type: ignore[attr-defined]
                    yield chunk
        except httpx.HTTPError as exc:
            raise _transport_error(self.base_url, exc) from exc

    async def chat(self, req: ChatCompletionRequest) -> ChatCompletion:
        return await self._post("/chat/completions", req, ChatCompletion)

    def stream(self, req: ChatCompletionRequest) -> AsyncIterator[ChatCompletionChunk]:
        return self._stream("/chat/completions", req, ChatCompletionChunk)

    async def complete(self, req: CompletionRequest) -> Completion:
        return await self._post("/completions", req, Completion)

    def stream_complete(self, req: CompletionRequest) -> AsyncIterator[Completion]:
        return self._stream("/completions", req, Completion)

    async def health(self) -> bool:
        try:
            resp = await self._client.get("/models", timeout=2.0)
        except httpx.HTTPError:
            return False
        return resp.status_code < 500

    def describe(self) -> dict[str, Any]:
        return {
            "engine": "openai",
            "base_url": self.base_url,
            "upstream_model": self.upstream_model,
        }

    async def close(self) -> None:
        await self._client.aclose()


def _transport_error(base_url: str, exc: httpx.HTTPError) -> EngineError:
    # Nothing reached the client yet for connect failures, so another replica may serve it.
    retryable = isinstance(
        exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError)
    )
    return EngineError(
        f"upstream {base_url} is unreachable: {type(exc).__name__}: {exc}".rstrip(": "),
        retryable=retryable,
        status_code=503 if retryable else 502,
        code="upstream_unavailable",
    )


def _status_error(status: int, content: bytes) -> APIError:
    message, etype, param, code = f"upstream answered HTTP {status}", None, None, None
    try:
        err = json.loads(content).get("error", {})
        if isinstance(err, dict):
            message = err.get("message") or message
            etype, param, code = err.get("type"), err.get("param"), err.get("code")
        elif isinstance(err, str):
            message = err
    except (ValueError, AttributeError):
        pass
    if status >= 500 or status == 429:
        exc = EngineError(
            message,
            param=param,
            code=code,
            retryable=True,
            status_code=502 if status >= 500 else 429,
        )
        if status == 429:
            exc.error_type = "rate_limit_error"
        return exc
    # The caller gets the same error type it would get from a local engine.
    cls: type[APIError] = {
        400: ContextLengthExceeded if code == "context_length_exceeded" else InvalidRequestError,
        401: AuthenticationError,
        403: PermissionDenied,
        404: ModelNotFound,
    }.get(status, APIError)
    out = cls(message, param=param, code=code)
    out.status_code = status
    out.error_type = etype or ("invalid_request_error" if cls is APIError else out.error_type)
    return out
