"""Requests for a model go to its least-busy healthy replica, with failover.

A replica that refuses connections or fails before its first token (a retryable
``EngineError``) is marked down for ``down_cooldown`` seconds and the request is retried
on another replica; a background prober brings replicas back when their health check
passes. Nothing has reached the client before the first token, so failover is invisible.

A request whose engine process died under it twice is not tried a third time: a request
that crashes the engine (a "poison" input meeting a native bug) would otherwise take every
replica of the model down in turn. It fails with a 503 ``engine_crashed`` instead; one
innocent request that happened to share both workers with such a request fails with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import itertools
import logging
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from openclone.config import ModelConfig, Settings
from openclone.engines import Engine, create_engine
from openclone.engines.base import AdapterHost
from openclone.errors import APIError, EngineError, ModelNotFound, ReplicaUnavailable
from openclone.model_names import is_internal, parse_model_name
from openclone.routing.splits import SplitTable

__all__ = ["ModelRoute", "Replica", "Router"]

_MAX_CRASHES = 2  # engine processes a request may see die under it before it is refused

log = logging.getLogger("openclone.router")
T = TypeVar("T")

# Finds a model the catalog does not name (a trained adapter, a registry alias) and returns
# its route, after adding it to the router; None when the name means nothing to it.
Discoverer = Callable[["Router", str], Awaitable["ModelRoute | None"]]


@dataclass
class Replica:
    id: str
    engine_name: str
    engine: Engine
    in_flight: int = 0
    healthy: bool = True
    down_until: float = 0.0
    last_error: str | None = None
    failures: int = 0
    served: int = 0

    def mark_down(self, error: str, cooldown: float) -> None:
        self.healthy = False
        self.down_until = time.monotonic() + cooldown
        self.last_error = error
        self.failures += 1
        log.warning("replica %s marked down: %s", self.id, error)

    def mark_up(self) -> None:
        if not self.healthy:
            log.info("replica %s is back", self.id)
        self.healthy = True
        self.last_error = None

    def worker_status(self) -> dict[str, Any] | None:
        """The engine worker process's state, for engines that run in one."""
        status = getattr(self.engine, "worker_status", None)
        return status() if callable(status) else None

    def status(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "engine": self.engine_name,
            "healthy": self.healthy,
            "in_flight": self.in_flight,
            "served": self.served,
            "failures": self.failures,
            "last_error": self.last_error,
            "worker": self.worker_status(),
            "detail": self.engine.describe(),
        }


@dataclass
class ModelRoute:
    config: ModelConfig
    replicas: list[Replica]
    _rr: itertools.count = field(default_factory=itertools.count)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def healthy(self) -> bool:
        return any(r.healthy for r in self.replicas)


class Router:
    def __init__(self, routes: dict[str, ModelRoute], settings: Settings) -> None:
        self.routes = routes
        self.settings = settings
        self.default_model = settings.default_model
        self.discoverers: list[Discoverer] = []
        # Registry names, replaced whole on each refresh (so a promotion is atomic):
        # requested name -> (pinned NAME@N shown to clients, the model that serves it).
        self.aliases: dict[str, tuple[str, str]] = {}
        self.engine_specs: dict[str, dict[str, Any]] = {}  # NAME@N -> {"engine", "params"}
        self.archived: dict[str, str] = {}  # archived NAME@N -> its target (never served)
        self.splits = SplitTable()  # shadow and canary candidates, by alias
        # Names a "did you mean" hint may show to anyone: the gateway hides a tenant's own
        # fine-tunes here, which another tenant must not learn exist.
        self.hintable: Callable[[str], bool] = lambda name: True
        # Locks of lock(), gone once no request holds or waits on them: keys come from
        # clients' model names, and a map that kept each one would grow without bound.
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._prober: asyncio.Task[None] | None = None
        self._background: list[asyncio.Task[None]] = []
        self._closers: list[Callable[[], None]] = []

    @classmethod
    async def build(cls, settings: Settings) -> Router:
        """Create every replica's engine (model loading happens off the event loop)."""
        routes: dict[str, ModelRoute] = {}
        try:
            for model in settings.models:
                replicas = []
                for i, (engine, params) in enumerate(model.replica_specs()):
                    eng = await asyncio.to_thread(create_engine, engine, model.name, params)
                    replicas.append(Replica(id=f"{model.name}#{i}", engine_name=engine, engine=eng))
                routes[model.name] = ModelRoute(model, replicas)
        except BaseException:
            await cls(routes, settings).close()
            raise
        return cls(routes, settings)

    # ---- lookup and choice -------------------------------------------------------------

    def resolve(self, name: str) -> ModelRoute:
        route = self.routes.get(name)
        parsed = parse_model_name(name)
        if route is None and parsed.adapter is not None:
            # BASE:ADAPTER goes to the base's replicas, which pick the adapter per request.
            # An adapter the base's engines do not hold yet is left to discovery.
            base = self.routes.get(parsed.base)
            if base is not None and any(
                isinstance(r.engine, AdapterHost) and parsed.adapter in r.engine.adapter_names()
                for r in base.replicas
            ):
                return base
        if route is None:
            raise self._not_found(name)
        return route

    def _not_found(self, name: str) -> ModelNotFound:
        # OpenAI's wording, plus the likeliest intended name ("SmolLM2-135M-Instruct").
        known = [n for n in self.names() if self.hintable(n)]
        by_case = [n for n in known if n.lower() == name.lower()]
        close = by_case or difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        return ModelNotFound(
            f"The model '{name}' does not exist or you do not have access to it.{hint}",
            param="model",
        )

    def names(self) -> list[str]:
        """Every name a client may send that the router knows now (no internal keys)."""
        listed = [n for n in self.routes if not is_internal(n)]
        return listed + [n for n in self.aliases if n not in self.routes]

    def pin(self, name: str) -> tuple[str, str]:
        """(the name to show, the model to route to): a registry alias or ``NAME@N`` resolves
        to its version; any other name is itself."""
        return self.aliases.get(name) or (name, name)

    async def route_for(self, name: str) -> ModelRoute:
        """``resolve``, and failing that the discoverers: models that appeared while serving."""
        try:
            return self.resolve(name)
        except ModelNotFound:
            if not self.discoverers:
                raise
        async with self.lock("name", name):  # concurrent first requests load it once
            with contextlib.suppress(ModelNotFound):
                return self.resolve(name)
            for discover in self.discoverers:
                route = await discover(self, name)
                if route is not None:
                    return route
        raise self._not_found(name)

    def lock(self, kind: str, key: str) -> asyncio.Lock:
        """The one lock of ``(kind, key)`` while anyone holds or waits on it, e.g. a requested
        name being discovered or an engine being created (kinds keep the two apart)."""
        return self._locks.setdefault((kind, key), asyncio.Lock())

    async def add_route(self, key: str, config: ModelConfig) -> ModelRoute:
        """Create ``config``'s replicas (off the event loop) and serve them as ``key``."""
        replicas = []
        for i, (engine, params) in enumerate(config.replica_specs()):
            eng = await asyncio.to_thread(create_engine, engine, config.name, params)
            replicas.append(Replica(id=f"{config.name}#{i}", engine_name=engine, engine=eng))
        route = ModelRoute(config, replicas)
        self.routes[key] = route
        return route

    def _pick(self, route: ModelRoute, tried: set[str]) -> Replica:
        now = time.monotonic()
        candidates = [r for r in route.replicas if r.id not in tried and r.healthy]
        if not candidates:
            # Every healthy one failed already: give rested replicas a chance before giving up.
            candidates = [r for r in route.replicas if r.id not in tried and r.down_until <= now]
        if not candidates:
            errors = "; ".join(f"{r.id}: {r.last_error}" for r in route.replicas if r.last_error)
            err = ReplicaUnavailable(
                f"no replica of model '{route.name}' is available"
                + (f" ({errors})" if errors else "")
            )
            # When the first replica is expected back: a client need not guess.
            err.retry_after = max(1.0, min(r.down_until for r in route.replicas) - now)
            raise err
        low = min(r.in_flight for r in candidates)
        best = [r for r in candidates if r.in_flight == low]
        return best[next(route._rr) % len(best)]

    # ---- calls -------------------------------------------------------------------------

    def _crashed_twice(self, model: str, exc: EngineError, crashes: int) -> EngineError | None:
        """The error for a request whose engine died under it ``crashes`` times, once that is
        twice (None before: it is tried on another replica)."""
        if crashes < _MAX_CRASHES:
            return None
        log.error("a request for %s was held by %d engine processes that died; not retried",
                  model, crashes)  # fmt: skip
        err = EngineError(
            f"the engine of model '{model}' died twice while answering this request, so it "
            f"is not tried on another replica ({exc.message})",
            code="engine_crashed",
            status_code=503,
        )
        err.crashes = crashes  # no Retry-After: the same request would crash two more
        return err

    def _pick_for(self, route: ModelRoute, tried: set[str], crashes: int) -> Replica:
        try:
            return self._pick(route, tried)
        except ReplicaUnavailable as err:
            err.crashes = crashes  # a canary's fallback goes on counting them
            raise

    def _rest(self, replica: Replica, exc: EngineError) -> None:
        """Mark a replica down after a retryable failure: for ``down_cooldown``, or as long
        as the engine itself expects to be away (a restarting worker), if longer."""
        replica.mark_down(exc.message, max(self.settings.down_cooldown, exc.retry_after or 0))

    async def call(
        self, model: str, fn: Callable[[Engine], Awaitable[T]], crashes: int = 0
    ) -> tuple[T, Replica]:
        """Run ``fn(engine)`` on a replica of ``model``, failing over on retryable errors;
        ``crashes``: engine deaths the request has already seen (on another model)."""
        route = await self.route_for(model)
        tried: set[str] = set()
        while True:
            replica = self._pick_for(route, tried, crashes)
            tried.add(replica.id)
            replica.in_flight += 1
            try:
                result = await fn(replica.engine)
            except EngineError as exc:
                if not exc.retryable:
                    raise
                self._rest(replica, exc)
                crashes += exc.crashed
                stop = self._crashed_twice(model, exc, crashes)
                if stop is not None:
                    raise stop from exc
                continue
            except APIError:
                raise
            except Exception as exc:  # an engine bug must not become a 500 without a shape
                log.exception("engine %s failed", replica.id)
                raise EngineError(f"model '{model}' failed: {type(exc).__name__}: {exc}") from exc
            finally:
                replica.in_flight -= 1
            replica.served += 1
            replica.mark_up()
            return result, replica

    async def stream(
        self, model: str, fn: Callable[[Engine], AsyncGenerator[T, None]], crashes: int = 0
    ) -> tuple[AsyncGenerator[T, None], Replica]:
        """Open ``fn(engine)`` and read its first item; fail over if that fails retryably
        (``crashes`` as for :meth:`call`).

        The returned iterator yields that first item again and must be closed by the caller.
        """
        route = await self.route_for(model)
        tried: set[str] = set()
        while True:
            replica = self._pick_for(route, tried, crashes)
            tried.add(replica.id)
            replica.in_flight += 1
            it = fn(replica.engine)
            try:
                first = await anext(it)
            except StopAsyncIteration:
                first = None
            except BaseException as exc:
                replica.in_flight -= 1
                with contextlib.suppress(Exception):
                    await it.aclose()
                if isinstance(exc, EngineError) and exc.retryable:
                    self._rest(replica, exc)
                    crashes += exc.crashed
                    stop = self._crashed_twice(model, exc, crashes)
                    if stop is not None:
                        raise stop from exc
                    continue
                if isinstance(exc, APIError) or not isinstance(exc, Exception):
                    raise
                log.exception("engine %s failed", replica.id)
                raise EngineError(f"model '{model}' failed: {type(exc).__name__}: {exc}") from exc
            replica.served += 1
            replica.mark_up()
            return self._guard(replica, first, it), replica

    async def _guard(
        self, replica: Replica, first: T | None, it: AsyncGenerator[T, None]
    ) -> AsyncGenerator[T, None]:
        try:
            if first is not None:
                yield first
                async for item in it:
                    yield item
        finally:
            replica.in_flight -= 1
            await it.aclose()

    # ---- health ------------------------------------------------------------------------

    def start(self) -> None:
        if self._prober is None:
            self._prober = asyncio.create_task(self._probe_forever(), name="replica-prober")

    async def probe_once(self, everyone: bool = False) -> None:
        """Probe resting replicas (or, at startup, ``everyone``) and update their state."""

        async def check(r: Replica) -> None:
            if not everyone and (r.healthy or time.monotonic() < r.down_until):
                return
            try:
                ok = await asyncio.wait_for(r.engine.health(), timeout=5)
            except Exception:
                ok = False
            if ok:
                r.mark_up()
            elif r.healthy:
                r.mark_down("health check failed", self.settings.down_cooldown)
            else:
                r.down_until = time.monotonic() + self.settings.down_cooldown

        await asyncio.gather(*(check(r) for route in self.routes.values() for r in route.replicas))

    async def _probe_forever(self) -> None:
        everyone = True  # the first round checks all, once the server is accepting requests
        while True:
            await asyncio.sleep(self.settings.health_interval)
            try:
                await self.probe_once(everyone)
                everyone = False
            except Exception:
                log.exception("replica probe failed")

    def keep(self, task: asyncio.Task[None]) -> None:
        """Run ``task`` for the router's lifetime; ``close()`` cancels it."""
        self._background.append(task)

    def on_close(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` once the engines are closed (e.g. close a store the router owns)."""
        self._closers.append(fn)

    async def close(self) -> None:
        for task in [*self._background, *([self._prober] if self._prober else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._background.clear()
        # A discovered route may sit under several names (NAME and BASE:NAME): close it once.
        for route in {id(r): r for r in self.routes.values()}.values():
            for r in route.replicas:
                try:
                    await r.engine.close()
                except Exception:
                    log.exception("closing %s failed", r.id)
        for fn in self._closers:
            fn()
        self._closers.clear()
