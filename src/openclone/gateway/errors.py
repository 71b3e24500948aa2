"""One place that turns errors into OpenAI-shaped JSON responses."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException

from openclone.errors import (
    APIError,
    EngineError,
    InvalidRequestError,
    RateLimitExceeded,
    StoreUnavailable,
)

log = logging.getLogger("openclone.gateway")


def error_response(exc: APIError) -> JSONResponse:
    headers = None
    if isinstance(exc, EngineError) and exc.retry_after is not None:
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    elif isinstance(exc, RateLimitExceeded):
        headers = exc.headers
    elif isinstance(exc, StoreUnavailable):
        headers = {"Retry-After": str(exc.retry_after)}
    return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=headers)


def _validation_message(errors: list[dict[str, Any]]) -> tuple[str, str | None]:
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid" or tuple(first.get("loc", ())) == ("body",):
        return (
            "We could not parse the JSON body of your request. The OpenAI API expects a JSON "
            f"payload ({first.get('ctx', {}).get('error', 'invalid JSON')}).",
            None,
        )
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = loc[0] if loc else None
    where = ".".join(loc) if loc else "body"
    msg = first.get("msg", "invalid value")
    if first.get("type") == "missing":
        text = f"Missing required parameter: '{where}'."
    else:
        text = f"Invalid value for '{where}': {msg}."
    if len(errors) > 1:
        text += f" ({len(errors) - 1} more problem{'s' if len(errors) > 2 else ''} in the request.)"
    return text, param


def install(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(list(exc.errors()))
        return error_response(InvalidRequestError(message, param=param))

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        err = APIError(str(exc.detail))
        err.status_code = exc.status_code
        err.error_type = "invalid_request_error" if exc.status_code < 500 else "server_error"
        err.code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return error_response(err)

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def _store_down(_: Request, exc: Exception) -> JSONResponse:
        # A lost database is an outage, not a bug: a 503 the client may retry, one log line.
        log.warning("database unreachable: %s", str(exc).splitlines()[0][:200])
        return error_response(
            StoreUnavailable("The service's database is unreachable right now; retry shortly.")
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(APIError(f"internal error: {type(exc).__name__}"))
