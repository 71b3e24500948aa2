"""Open a router the way every caller needs it: catalog, registry names, discovery, probes."""

from __future__ import annotations

import asyncio
import logging

from openclone.config import Settings
from openclone.routing.discovery import registry_models, retire_archived, trained_models
from openclone.routing.router import Router
from openclone.store import Store, open_store
from openclone.store.catalog import archived_versions, resolution_map

__all__ = ["open_router", "refresh_registry"]

log = logging.getLogger("openclone.routing")


async def open_router(
    settings: Settings, store: Store | None = None, *, registry_every: float = 1.0
) -> Router:
    """Load the catalog's engines and follow the registry in ``store`` (opened from
    ``settings`` and closed with the router when not given). Close it with ``close()``."""
    own = store is None
    db = await asyncio.to_thread(open_store, settings) if store is None else store
    try:
        router = await Router.build(settings)
    except BaseException:
        if own:
            db.close()
        raise
    if own:
        router.on_close(db.close)
    router.discoverers += [registry_models, trained_models]
    try:
        await refresh_registry(router, db)
    except BaseException:
        await router.close()
        raise
    router.start()
    router.keep(asyncio.create_task(_follow(router, db, registry_every), name="registry"))
    return router


async def refresh_registry(router: Router, store: Store) -> None:
    aliases, specs = await asyncio.to_thread(resolution_map, store)
    archived = await asyncio.to_thread(archived_versions, store)
    router.engine_specs = specs
    router.aliases = aliases  # one assignment: requests see the old map or the new one
    await retire_archived(router, archived)  # which records ``archived`` before it awaits
    await router.splits.refresh(store)  # shadow and canary splits, and canary counts


async def _follow(router: Router, store: Store, every: float) -> None:
    """Promotions made anywhere (the CLI, another gateway) reach this router within
    ``every`` seconds."""
    while True:
        await asyncio.sleep(every)
        try:
            await refresh_registry(router, store)
        except Exception:
            log.exception("registry refresh failed; serving the last known aliases")
