"""Models that appear while the server runs: trained adapters, served without a restart.

``openclone train`` writes a record per model (``$OPENCLONE_HOME/models/NAME/record.json``).
The first request for ``NAME`` or ``BASE:NAME`` finds the record, and the adapter is loaded
onto a ``transformers`` engine for its base — one engine per base, shared by every adapter
trained on it, the way many fine-tunes are served from one copy of the base weights.
"""

from __future__ import annotations

import asyncio
import logging
import re
import weakref

from openclone.config import ModelConfig
from openclone.engines.base import AdapterHost
from openclone.errors import ModelNotFound
from openclone.model_names import adapters_key, parse_model_name
from openclone.routing.router import ModelRoute, Router

__all__ = ["registry_models", "trained_models"]

log = logging.getLogger("openclone.discovery")
# Trained runs are named like this (at most 64 characters); a longer name is no file name.
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


async def trained_models(router: Router, name: str) -> ModelRoute | None:
    from openclone.store.trained import get_trained

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
    key = adapters_key(record.base)  # the shared engine of every adapter on this base
    # The router locks per requested name; two adapters of one base arriving at once would
    # each create the base's engine without a lock per base as well.
    async with _base_lock(router, key):
        route = router.routes.get(key)
        if route is None:
            params = {
                "model_path": record.base_path or None,
                "adapters": {adapter: record.adapter_path},
            }
            config = ModelConfig(name=record.base, engine="transformers", params=params)
            log.info("serving trained model %s on a new %s engine", adapter, record.base)
            route = await router.add_route(key, config)
        else:
            for replica in route.replicas:
                engine = replica.engine
                if isinstance(engine, AdapterHost) and adapter not in engine.adapter_names():
                    await engine.add_adapter(adapter, record.adapter_path)
    router.routes[adapter] = route
    router.routes[f"{record.base}:{adapter}"] = route
    return route


# One lock per (router, base engine key): bounded by the bases of trained runs on disk.
_base_locks: weakref.WeakKeyDictionary[Router, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _base_lock(router: Router, key: str) -> asyncio.Lock:
    return _base_locks.setdefault(router, {}).setdefault(key, asyncio.Lock())


async def registry_models(router: Router, name: str) -> ModelRoute | None:
    """A registry version that brings its own engine (a GGUF file, an HF directory)."""
    spec = router.engine_specs.get(name)
    if spec is None:
        return None
    config = ModelConfig(
        name=name, engine=spec.get("engine", "llamacpp"), params=dict(spec.get("params", {}))
    )
    return await router.add_route(name, config)
