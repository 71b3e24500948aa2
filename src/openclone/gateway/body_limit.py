"""The request body cap (``max_body_bytes``), enforced before anything parses the body.

A pure ASGI middleware rather than Starlette's ``BaseHTTPMiddleware``, so streaming
answers and serving's disconnect watch are untouched: the body is read here, counted chunk
by chunk as it arrives (a chunked upload declares no length), and handed on whole; later
``receive`` calls reach the server as before. Nothing past the cap is kept in memory.

Uploads (``POST /v1/files``) have a cap of their own (``max_file_bytes``). One that declares
its length within that cap goes straight through unbuffered (the server never reads past a
declared length), so a large upload is not held twice.
"""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openclone.errors import InvalidRequestError
from openclone.gateway.errors import error_response

__all__ = ["SURROGATE_FLAG", "BodyLimit"]

SURROGATE_FLAG = "openclone_surrogate_escape"  # request.state: the body may hold \\udXXX
# A JSON escape, or the raw bytes json.loads lets through ("surrogatepass": ED A0..BF).
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, uploads: dict[str, int] | None = None) -> None:
        """``uploads``: {path: cap} for the POST routes that take uploads larger than
        ``max_bytes``."""
        self.app = app
        self.max_bytes = max_bytes
        self.uploads = uploads or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        cap = self.max_bytes
        if scope.get("method") == "POST" and scope.get("path") in self.uploads:
            cap = self.uploads[scope["path"]]
            if declared is not None and declared <= cap:
                await self.app(scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        over = declared is not None and declared > cap
        replay: Message | None = None
        while True:
            message = await receive()
            if message["type"] != "http.request":
                replay = message  # the client left: the app sees it and gives up
                break
            body = message.get("body", b"")
            size += len(body)
            over = over or size > cap
            if not over:
                chunks.append(body)
            else:
                chunks.clear()
            if not message.get("more_body", False):
                break
        if over:
            # Answered after the body was read (and dropped): a server that answers while
            # the client still sends resets the connection, and the client sees no 413.
            if replay is None:
                await self._refuse(scope, receive, send, max(size, declared or 0), cap)
            return
        whole = b"".join(chunks)
        # Only a JSON escape or ED A0..BF (json.loads decodes bytes with "surrogatepass")
        # can carry a lone surrogate in a UTF-8 body, so a body without one spares serving
        # its walk over every string of the request. UTF-16/32 bodies are always walked.
        scope.setdefault("state", {})[SURROGATE_FLAG] = (
            json.detect_encoding(whole) not in ("utf-8", "utf-8-sig")
            or _SURROGATE.search(whole) is not None
        )
        pending = [replay or {"type": "http.request", "body": whole}]

        async def replayed() -> Message:
            return pending.pop() if pending else await receive()

        await self.app(scope, replayed, send)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, size: int, cap: int
    ) -> None:
        setting = "max_body_bytes" if cap == self.max_bytes else "max_file_bytes"
        err = InvalidRequestError(
            f"The request body is {size} bytes; this server accepts at most {cap} "
            f"bytes ({setting}).",
            code="request_too_large",
        )
        err.status_code = 413
        await error_response(err)(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length before we see it
    return None
