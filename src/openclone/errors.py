"""OpenClone's exceptions.

    OpenCloneError
    ├── ConfigError                  bad openclone.toml / OPENCLONE_* values (startup)
    ├── EncryptionError              stored data does not decrypt: wrong or missing master
    │                                key, a tenant's data key erased, a value moved or altered
    └── APIError                     anything a client can cause; rendered as OpenAI's error JSON
        ├── InvalidRequestError      400 invalid_request_error
        │   ├── ContextLengthExceeded    400 code=context_length_exceeded
        │   └── UnsupportedParameter     400 code=unsupported_parameter (engine can't do it)
        ├── AuthenticationError      401
        ├── PermissionDenied         403
        ├── ModelNotFound            404 code=model_not_found
        ├── RateLimited              429 (queue full)
        │   └── RateLimitExceeded        429 a tenant's or key's limit or quota, with headers
        ├── EngineError              502/503: the engine or upstream failed
        │   └── ReplicaUnavailable       no healthy replica could serve the request
        └── StoreUnavailable         503 the database cannot be reached (retry later)

Foreign errors (httpx, llama.cpp, torch) are mapped to these at the engine seam and chained
with ``from`` so the cause stays in the logs while the client gets a clean message.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIError",
    "AuthenticationError",
    "ConfigError",
    "ContextLengthExceeded",
    "EncryptionError",
    "EngineError",
    "InvalidRequestError",
    "ModelNotFound",
    "OpenCloneError",
    "PermissionDenied",
    "RateLimitExceeded",
    "RateLimited",
    "ReplicaUnavailable",
    "StoreUnavailable",
    "UnsupportedParameter",
]


class OpenCloneError(Exception):
    """Base of every error OpenClone raises on purpose."""


class ConfigError(OpenCloneError):
    """The configuration is invalid; the message says which value and why."""


class EncryptionError(OpenCloneError):
    """Sealed data cannot be opened; the message says which key and why (never the data).
    Not a client's doing: the gateway answers it as an internal error and logs this."""


class APIError(OpenCloneError):
    status_code: int = 500
    error_type: str = "server_error"
    default_code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequestError(APIError):
    status_code = 400
    error_type = "invalid_request_error"


class ContextLengthExceeded(InvalidRequestError):
    default_code = "context_length_exceeded"


class UnsupportedParameter(InvalidRequestError):
    default_code = "unsupported_parameter"


class AuthenticationError(APIError):
    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDenied(APIError):
    status_code = 403
    error_type = "permission_error"


class ModelNotFound(APIError):
    status_code = 404
    error_type = "invalid_request_error"
    default_code = "model_not_found"


class RateLimited(APIError):
    status_code = 429
    error_type = "rate_limit_error"
    default_code = "server_busy"


class RateLimitExceeded(RateLimited):
    """A tenant's or a key's limit or quota: ``error_type`` says which kind (``requests``,
    ``tokens``, ``insufficient_quota``, as OpenAI names them); ``headers`` (``Retry-After``,
    ``x-ratelimit-*``) go on the 429."""

    default_code = "rate_limit_exceeded"

    def __init__(
        self,
        message: str,
        *,
        error_type: str,
        headers: dict[str, str],
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code)
        self.error_type = error_type
        self.headers = headers


class EngineError(APIError):
    """The engine failed. ``retryable`` marks failures another replica may not have;
    ``retry_after`` (seconds) becomes a ``Retry-After`` header when the client gets it;
    ``crashed``: the engine's process died while it held this request (the request may be
    what killed it); ``crashes``: on the router's last error for a request, how many engine
    processes died under it in all."""

    status_code = 502
    error_type = "server_error"
    default_code = "engine_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retryable: bool = False,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code)
        self.retryable = retryable
        self.retry_after: float | None = None
        self.crashed = False
        self.crashes = 0
        if status_code is not None:
            self.status_code = status_code


class ReplicaUnavailable(EngineError):
    status_code = 503
    default_code = "engine_unavailable"


class StoreUnavailable(APIError):
    """The database could not be reached for something this request needs (a key not in
    the cache, a stored object). Answering needs no database, so only these wait on it."""

    status_code = 503
    error_type = "server_error"
    default_code = "store_unavailable"
    retry_after = 5
