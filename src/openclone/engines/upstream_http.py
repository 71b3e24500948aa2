"""The HTTP client between the gateway and an upstream, on aiohttp.

The gateway's own cost in front of an upstream is mostly this one call. Measured against
the trivial upstream of ``benchmarks/gateway_overhead.py`` (2,000 sequential POSTs, p50):
httpx 0.62 ms, httpcore alone 0.46 ms, aiohttp 0.18 ms — httpx's request/response models,
cookie jar, hooks and anyio layers were more than half of what a proxied request cost.
aiohttp keeps what production needs: pooled keep-alive connections, TLS (with httpx's CA
rules: certifi, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``) and the ``HTTPS_PROXY``/``NO_PROXY``
environment. Bodies go out pre-serialised; stream bodies come back as raw lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import httpx

__all__ = ["RETRYABLE", "TRANSPORT_ERRORS", "EventLines", "UpstreamHTTP", "UpstreamResponse"]

# Failures before the upstream took the request: another replica may serve it.
RETRYABLE: tuple[type[Exception], ...] = (
    aiohttp.ClientConnectorError,
    aiohttp.ConnectionTimeoutError,
    aiohttp.ServerDisconnectedError,
)
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (aiohttp.ClientError, asyncio.TimeoutError)
_DRAIN_TIMEOUT = 1.0  # seconds an upstream may take to end its body after the last event
# Below the 5 s keep-alive of uvicorn-based upstreams (vLLM, another OpenClone), so a pooled
# connection is never reused just as the server closes it.
_KEEPALIVE = 4.0


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``, ``NO_PROXY``, ...).

    Decided once per upstream: aiohttp's own ``trust_env`` looks it up (and reads
    ``~/.netrc``) in a worker thread on every request, two thread hops per call.
    """
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy if "://" in proxy else "http://" + proxy


@dataclass
class UpstreamResponse:
    status: int
    content: bytes


class UpstreamHTTP:
    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        timeout: float,
        connect_timeout: float,
        max_connections: int,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Content-Type": "application/json", **headers}
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_read=timeout
        )
        self._max_connections = max_connections
        self._proxy = proxy_for(self.base_url)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _client(self) -> aiohttp.ClientSession:
        # A session belongs to the event loop it was made in: made on first use, and again
        # if a caller (a CLI tool, a test) runs this engine under a new loop.
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._max_connections,
                    keepalive_timeout=_KEEPALIVE,
                    ssl=httpx.create_ssl_context(),
                ),
                headers=self._headers,
                timeout=self._timeout,
                proxy=self._proxy,
                cookie_jar=aiohttp.DummyCookieJar(),  # an API upstream sets none worth keeping
            )
            self._loop = loop
        return self._session

    async def post(self, path: str, body: bytes) -> UpstreamResponse:
        async with self._client().post(self.base_url + path, data=body) as resp:
            return UpstreamResponse(resp.status, await resp.read())

    async def get(self, path: str, time_limit: float) -> UpstreamResponse:
        async with self._client().get(
            self.base_url + path, timeout=aiohttp.ClientTimeout(total=time_limit)
        ) as resp:
            return UpstreamResponse(resp.status, await resp.read())

    @contextlib.asynccontextmanager
    async def stream(self, path: str, body: bytes) -> AsyncIterator[tuple[int, EventLines]]:
        """The response status and its body as lines."""
        async with self._client().post(self.base_url + path, data=body) as resp:
            yield resp.status, EventLines(resp.content.iter_any())

    async def aclose(self) -> None:
        if self._session is not None and self._loop is asyncio.get_running_loop():
            await self._session.close()
        self._session = None


class EventLines:
    """Lines of a server-sent event stream, split as the bytes arrive.

    Split here rather than by aiohttp's ``readline``, which refuses lines over 64 KiB: an
    upstream may put a whole long answer in one event.
    """

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._lines: list[bytes] = []  # complete lines, the next one last
        self._rest = b""
        self._ended = False

    def __aiter__(self) -> EventLines:
        return self

    async def __anext__(self) -> bytes:
        while not self._lines:
            if self._ended:
                raise StopAsyncIteration
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                self._ended = True
                if self._rest:
                    self._lines.append(self._rest.rstrip(b"\r"))
                    self._rest = b""
                continue
            *done, self._rest = (self._rest + chunk).split(b"\n")
            self._lines = [line.rstrip(b"\r") for line in reversed(done)]
        return self._lines.pop()

    async def read_all(self) -> bytes:
        """The whole body, for an error answer (call it before reading any line)."""
        return b"".join([c async for c in self._chunks])

    async def drain(self) -> None:
        """Read the body to its end (the chunked terminator, usually), or the connection is
        closed instead of going back to the pool and the next request pays for a new one."""

        async def rest() -> None:
            async for _ in self._chunks:
                pass

        with contextlib.suppress(Exception):
            await asyncio.wait_for(rest(), _DRAIN_TIMEOUT)
