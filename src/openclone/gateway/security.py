"""Browser-facing guards: the Host allow-list, same-origin checks on the web chat's API, and
the security headers every response carries.

A keyless loopback server trusts whoever reaches it, so a web page must not be able to
reach it: DNS rebinding (``attacker.example`` resolving to 127.0.0.1) is stopped by the
Host allow-list, a cross-site form post by requiring JSON and a same-origin ``Origin``.
Written as plain ASGI, not ``BaseHTTPMiddleware``: a few microseconds per request.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openclone.config import Settings
from openclone.errors import InvalidRequestError, PermissionDenied
from openclone.gateway.errors import error_response

__all__ = ["SecurityMiddleware", "allowed_hosts", "same_origin"]

_WILDCARD_BINDS = ("0.0.0.0", "::", "[::]")
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
# Pages may not be framed (clickjacking), sniffed into another type, or leak their URL.
_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
_FRAME_CSP = (b"content-security-policy", b"frame-ancestors 'none'")
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def allowed_hosts(settings: Settings) -> frozenset[str] | None:
    """The Host names served, lower case; ``None``: any (``'*'``, or a wildcard bind with
    nothing configured, where keys are required anyway and the names are unknowable)."""
    hosts = [h.lower().strip("[]") for h in settings.allowed_hosts]
    if not hosts:
        if settings.host in _WILDCARD_BINDS:
            return None
        hosts = [*_LOOPBACK_NAMES, settings.host.lower().strip("[]")]
    return None if "*" in hosts else frozenset(hosts)


def _host_name(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8000
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _header(scope: Scope, name: bytes) -> str | None:
    headers: Iterable[tuple[bytes, bytes]] = scope.get("headers", ())
    for k, v in headers:
        if k == name:
            return v.decode("latin-1")
    return None


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, hosts: frozenset[str] | None) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host")
        # No Host at all is an HTTP/1.0 tool, never a browser, which is what this guards.
        if self.hosts is not None and host is not None and _host_name(host) not in self.hosts:
            err = InvalidRequestError(
                f"host {host!r} is not served here; add it to allowed_hosts to serve it",
                code="invalid_host",
            )
            await error_response(err)(scope, receive, self._headers(send))
            return
        await self.app(scope, receive, self._headers(send))

    @staticmethod
    def _headers(send: Send) -> Send:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers", ()))
                headers.extend(_HEADERS)
                if not any(k.lower() == _FRAME_CSP[0] for k, _ in headers):
                    headers.append(_FRAME_CSP)  # the page's own policy says it already
                message = {**message, "headers": headers}
            await send(message)

        return with_headers


async def same_origin(request: Request) -> None:
    """A dependency for state-changing browser API routes: a JSON body (a cross-site form
    cannot send one without a CORS preflight, which this server never grants) and, when the
    browser names the page's origin, this server's own."""
    if request.method not in _UNSAFE:
        return
    origin = request.headers.get("origin")
    if origin is not None:
        parts = urlsplit(origin)
        host = request.headers.get("host", "")
        if parts.scheme not in ("http", "https") or parts.netloc.lower() != host.lower():
            raise PermissionDenied(
                f"cross-origin request from {origin!r} refused", code="cross_origin"
            )
    if request.method != "DELETE":  # a DELETE always needs a preflight; it has no body
        ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if ctype != "application/json":
            raise InvalidRequestError(
                "this endpoint takes a JSON body: send 'Content-Type: application/json'",
                code="unsupported_media_type",
            )
