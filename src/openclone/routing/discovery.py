"""Models that appear while the server runs: trained adapters, served without a restart.

``openclone train`` writes a record per model (``$OPENCLONE_HOME/models/NAME/record.json``).
The first request for ``NAME`` or ``BASE:NAME`` finds the record, and the adapter is loaded
onto an engine of its base — one engine per base, shared by every adapter trained on it, the
way many fine-tunes are served from one copy of the base weights: llama.cpp (batched, the
catalog's own engine where it loads the same GGUF) for runs with a GGUF LoRA, else
``transformers``.

Archiving works the other way (:func:`retire_archived`, on every registry refresh): a run no
live registry version serves any more is unloaded from every engine, and its names, like the
archived ``NAME@N`` themselves, answer 404 from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from pathlib import Path

from openclone.config import ModelConfig
from openclone.engines.base import AdapterHost
from openclone.errors import ConfigError, ModelNotFound
from openclone.model_names import adapters_key, parse_model_name
from openclone.routing.router import ModelRoute, Router
from openclone.store.trained import TrainedModel, get_trained, record_path

__all__ = ["registry_models", "retire_archived", "trained_models"]

log = logging.getLogger("openclone.discovery")
# Trained runs are named like this (at most 64 characters); a longer name is no file name.
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


async def trained_models(router: Router, name: str) -> ModelRoute | None:

    parsed = parse_model_name(name)
    base_name, adapter = (parsed.base, parsed.adapter) if parsed.adapter else ("", name)
    if not _NAME.fullmatch(adapter):
        return None
    try:
        record = await asyncio.to_thread(get_trained, adapter, router.settings.home)
    except ModelNotFound:
        return None
    if base_name and base_name != record.base:
        return None  # BASE:NAME must name the base the adapter was trained on
    if record.served_as in _withdrawn(router):
        return None  # every registry version of the run is archived
    route = await _host(router, record)
    router.routes[adapter] = route
    router.routes[f"{record.base}:{adapter}"] = route
    return route


async def _host(router: Router, record: TrainedModel) -> ModelRoute:
    """The route whose engines serve ``record``'s adapter, with the adapter added.

    A run with a GGUF LoRA goes to llama.cpp: onto the catalog's own engine for that very
    GGUF file when there is one (base and adapter requests then share one batch loop), else
    onto one engine per base shared by its runs. A catalog ``vllm`` engine of the base takes
    the PEFT adapter (loaded through vLLM's runtime API); otherwise a run with only a PEFT
    adapter goes to a ``transformers`` engine per base."""
    catalog = router.routes.get(record.base)
    on_vllm = catalog is not None and catalog.config.engine == "vllm"
    fast = not on_vllm and bool(record.gguf_adapter) and record.base_path.endswith(".gguf")
    path = record.gguf_adapter if fast else record.adapter_path
    if on_vllm or (fast and catalog is not None and _same_gguf(catalog, record.base_path)):
        key = record.base
    else:
        # Both kinds may serve runs of one base, so each has its own internal key.
        key = adapters_key(record.base if fast else f"{record.base}+peft")
    # The router locks per requested name; two adapters of one base arriving at once would
    # each create the base's engine without a lock per base as well.
    async with router.lock("engine", key):
        route = router.routes.get(key)
        if route is None:
            engine = "llamacpp" if fast else "transformers"
            params = {"model_path": record.base_path or None, "adapters": {record.name: path}}
            config = ModelConfig(name=record.base, engine=engine, params=params)
            log.info("serving trained model %s on a new %s engine", record.name, engine)
            return await router.add_route(key, config)
        for replica in route.replicas:
            engine_ = replica.engine
            if isinstance(engine_, AdapterHost) and record.name not in engine_.adapter_names():
                await engine_.add_adapter(record.name, path)
        log.info("serving trained model %s on the engine of %s", record.name, key)
        return route


def _same_gguf(route: ModelRoute, path: str) -> bool:
    """Whether the catalog route's llama.cpp engine loads the GGUF file at ``path``."""
    from openclone.config import bundled_model_path

    if route.config.engine != "llamacpp":
        return False
    own = route.config.params.get("model_path")
    try:
        mine = Path(own) if own else bundled_model_path()
        return mine.resolve() == Path(path).resolve()
    except (OSError, ConfigError):
        return False


async def registry_models(router: Router, name: str) -> ModelRoute | None:
    """A registry version that brings its own engine (a GGUF file, an HF directory)."""
    spec = router.engine_specs.get(name)
    if spec is None:
        return None
    config = ModelConfig(
        name=name, engine=spec.get("engine", "llamacpp"), params=dict(spec.get("params", {}))
    )
    return await router.add_route(name, config)


def _withdrawn(router: Router) -> set[str]:
    """Targets (``BASE:RUN``) of archived versions that no live version serves."""
    live = {target for _, target in router.aliases.values()}
    return set(router.archived.values()) - live


def _deleted(router: Router) -> set[str]:
    """Targets (``BASE:RUN``) of served runs whose record is gone from disk and that no
    live version serves: an erased tenant's fine-tune, whose versions were deleted, not
    archived. One stat per served run, on a registry refresh."""
    live = {target for _, target in router.aliases.values()}
    gone = set()
    for key, route in router.routes.items():
        adapter = parse_model_name(key).adapter
        if adapter is None or route.config.name == key or key in live:
            continue  # not a discovered BASE:RUN (the catalog's, or an internal key)
        if _NAME.fullmatch(adapter) and not record_path(adapter, router.settings.home).is_file():
            gone.add(key)
    return gone


async def retire_archived(router: Router, archived: dict[str, str]) -> None:
    """Stop serving what archived versions served (``archived``: ``NAME@N`` -> target).

    A version with its own engine loses its route; a run that no live version serves any
    more is unloaded from every engine that holds it (engines finish the requests already
    decoding with it first) and its names leave the routes, so they answer 404 rather than
    falling through to the base. Idempotent: called on every registry refresh."""
    router.archived = archived
    for pinned in archived:
        route = router.routes.get(pinned)
        if route is not None and route.config.name == pinned:
            del router.routes[pinned]
            router.keep(asyncio.create_task(_close_when_idle(route), name=f"retire-{pinned}"))
            log.info("archived %s: its engine closes once idle", pinned)
    for target in _withdrawn(router) | _deleted(router):
        adapter = parse_model_name(target).adapter
        if adapter is None:
            continue  # a catalog model: archiving a version never unloads the catalog
        for key in (adapter, target):
            route = router.routes.get(key)
            if route is not None and route.config.name != key:  # discovery's extra names
                del router.routes[key]
        for route in {id(r): r for r in router.routes.values()}.values():
            for replica in route.replicas:
                engine = replica.engine
                if isinstance(engine, AdapterHost) and adapter in engine.adapter_names():
                    try:
                        await engine.remove_adapter(adapter)
                    except Exception:
                        log.exception("unloading %s from %s failed", adapter, replica.id)
                    else:
                        log.info("archived: unloaded adapter %s from %s", adapter, replica.id)


async def _close_when_idle(route: ModelRoute) -> None:
    """Close a route's engines once the requests it was serving are done."""
    try:
        # in_flight is a plain counter (the router's), with no event to wait on.
        while any(r.in_flight for r in route.replicas):  # noqa: ASYNC110
            await asyncio.sleep(0.2)
    finally:
        for replica in route.replicas:
            with contextlib.suppress(Exception):
                await replica.engine.close()
