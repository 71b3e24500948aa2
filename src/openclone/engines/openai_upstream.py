"""Any OpenAI-compatible server as an engine: OpenAI itself, vLLM, TGI, Ollama,
llama.cpp's server, another OpenClone.

One class, configured per catalog entry (base URL, key, upstream model name), not a
subclass per provider. Requests are forwarded with unknown fields intact, so a proxied
closed API keeps every feature the client uses.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncGenerator, Awaitable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from openclone.engines.base import Capabilities
from openclone.engines.upstream_http import (
    RETRYABLE,
    TRANSPORT_ERRORS,
    UpstreamHTTP,
    UpstreamResponse,
)
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
    EmbeddingList,
    EmbeddingRequest,
)

__all__ = ["OpenAIConfig", "OpenAIEngine"]

T = TypeVar("T", bound=BaseModel)


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
    # vLLM reuses cached prefixes across every request unless a request carries a
    # cache_salt; with this on, each tenant's requests carry their own (OpenAI itself
    # rejects the field, so it is off by default).
    cache_salt: bool = False
    # The deprecation watch (openclone.loop.upstream_watch) looks the model up in the
    # upstream's models list by ``model``; an Azure deployment is listed by its base
    # model's id instead (``listed_as``), and ``watch_lifecycle = false`` leaves it unwatched.
    listed_as: str | None = None
    watch_lifecycle: bool = True


class OpenAIEngine:
    def __init__(self, model_name: str, config: OpenAIConfig) -> None:
        self.model_name = model_name
        self.upstream_model = config.model or model_name
        self.listed_as = config.listed_as or self.upstream_model  # its id in the models list
        self.watch_lifecycle = config.watch_lifecycle
        self.cache_salt = config.cache_salt
        self.base_url = config.base_url.rstrip("/")
        key = config.api_key or (os.environ.get(config.api_key_env) if config.api_key_env else None)
        headers = dict(config.headers)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = UpstreamHTTP(
            self.base_url,
            headers,
            timeout=config.timeout,
            connect_timeout=config.connect_timeout,
            max_connections=config.max_connections,
        )
        self.capabilities = Capabilities(
            streaming=True,
            completions=True,
            tools=True,
            json_schema=True,
            logprobs=True,
            adapters=False,
            max_context=config.max_context,
            # Whether the upstream model embeds is the upstream's to say: it answers 4xx if not.
            embeddings=True,
        )

    @classmethod
    def from_config(cls, model_name: str, params: dict[str, Any]) -> OpenAIEngine:
        try:
            config = OpenAIConfig(**params)
        except ValidationError as exc:
            raise ConfigError(f"model {model_name!r}: invalid openai parameters: {exc}") from exc
        return cls(model_name, config)

    def _upstream_name(self, req: BaseModel) -> str:
        """The model name the upstream is sent: the configured one."""
        return self.upstream_model

    def _body(self, req: BaseModel, stream: bool = False) -> bytes:
        update: dict[str, Any] = {"model": self._upstream_name(req)}
        if stream:
            update["stream"] = True
        if self.cache_salt:
            # Set here, never taken from the client: a tenant must not name another's salt.
            scope = getattr(req, "cache_scope", None) or ""
            update["cache_salt"] = hashlib.sha256(f"openclone:{scope}".encode()).hexdigest()[:32]
        # Unknown fields the client sent ride along: a proxied API keeps every feature.
        return (
            req.model_copy(update=update)
            .model_dump_json(exclude_none=True, by_alias=True, exclude_unset=True)
            .encode()
        )

    async def _ok(self, call: Awaitable[UpstreamResponse]) -> UpstreamResponse:
        """The upstream's 200 reply; a lost connection or another status as our error."""
        try:
            resp = await call
        except TRANSPORT_ERRORS as exc:
            raise _transport_error(self.base_url, exc) from exc
        if resp.status != 200:
            raise _status_error(resp.status, resp.content)
        return resp

    async def _post(self, path: str, req: BaseModel, cls: type[T]) -> T:
        resp = await self._ok(self._http.post(path, self._body(req)))
        try:
            out = cls.model_validate_json(resp.content)
        except ValidationError as exc:
            raise EngineError(f"upstream {self.base_url} sent a malformed reply: {exc}") from exc
        out.model = getattr(req, "model", self.model_name)  # type: ignore[attr-defined]
        return out

    async def _stream(self, path: str, req: BaseModel, cls: type[T]) -> AsyncGenerator[T, None]:
        client_model = getattr(req, "model", self.model_name)
        try:
            async with self._http.stream(path, self._body(req, stream=True)) as (status, lines):
                if status != 200:
                    raise _status_error(status, await lines.read_all())
                async for line in lines:
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        await lines.drain()
                        return
                    try:
                        chunk = cls.model_validate_json(data)
                    except ValidationError as exc:
                        raise EngineError(
                            f"upstream {self.base_url} sent a malformed stream chunk: {exc}"
                        ) from exc
                    chunk.model = client_model  # type: ignore[attr-defined]
                    yield chunk
        except TRANSPORT_ERRORS as exc:
            raise _transport_error(self.base_url, exc) from exc

    async def chat(self, req: ChatCompletionRequest) -> ChatCompletion:
        return await self._post("/chat/completions", req, ChatCompletion)

    def stream(self, req: ChatCompletionRequest) -> AsyncGenerator[ChatCompletionChunk, None]:
        return self._stream("/chat/completions", req, ChatCompletionChunk)

    async def complete(self, req: CompletionRequest) -> Completion:
        return await self._post("/completions", req, Completion)

    def stream_complete(self, req: CompletionRequest) -> AsyncGenerator[Completion, None]:
        return self._stream("/completions", req, Completion)

    async def embed(self, req: EmbeddingRequest) -> EmbeddingList:
        # Floats on the wire: the gateway encodes base64 itself, for every engine alike.
        return await self._post(
            "/embeddings", req.model_copy(update={"encoding_format": "float"}), EmbeddingList
        )

    async def health(self) -> bool:
        try:
            resp = await self._http.get("/models", time_limit=2.0)
        except TRANSPORT_ERRORS:
            return False
        return resp.status < 500

    async def list_models(self, time_limit: float = 10.0) -> tuple[list[dict[str, Any]], bool]:
        """The entries of the upstream's ``GET /models`` (raw: each upstream adds its own
        fields, such as shutdown dates), and whether that was the whole list (False: the
        upstream pages it, ``has_more`` or a next-page token); raises EngineError when it
        cannot be read."""
        resp = await self._ok(self._http.get("/models", time_limit=time_limit))
        try:
            body = json.loads(resp.content)
            data = body["data"]
        except (ValueError, KeyError, TypeError) as exc:
            raise EngineError(f"upstream {self.base_url} sent a malformed models list") from exc
        if not isinstance(data, list):
            raise EngineError(f"upstream {self.base_url} sent a malformed models list")
        paged = bool(
            body.get("has_more") or body.get("next_page_token") or body.get("nextPageToken")
        )
        return [entry for entry in data if isinstance(entry, dict)], not paged

    def describe(self) -> dict[str, Any]:
        return {
            "engine": "openai",
            "base_url": self.base_url,
            "upstream_model": self.upstream_model,
        }

    async def close(self) -> None:
        await self._http.aclose()


def _transport_error(base_url: str, exc: Exception) -> EngineError:
    # Nothing reached the client yet for connect failures, so another replica may serve it.
    retryable = isinstance(exc, RETRYABLE)
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
