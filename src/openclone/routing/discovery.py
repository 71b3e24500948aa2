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

from openclone.config import ModelConfig
from openclone.engines.base import AdapterHost
from openclone.errors import ModelNotFound
from openclone.model_names import adapters_key, parse_model_name
from openclone.routing.router import ModelRoute, Router

__all__ = ["registry_models", "trained_models"]

log = logging.getLogger("openclone.discovery")
_NAME = re.compile(r"[A-Za-z0-9_-]+")


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


async def registry_models(router: Router, name: str) -> ModelRoute | None:
    """A registry version that brings its own engine (a GGUF file, an HF directory)."""
    spec = router.engine_specs.get(name)
    if spec is None:
        return None
    config = ModelConfig(
        name=name, engine=spec.get("engine", "llamacpp"), params=dict(spec.get("params", {}))
    )
    return await router.add_route(name, config)
