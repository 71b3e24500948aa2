"""What the registry's tables say each requested name means, for the router.

The router reads :func:`resolution_map` every second (``routing.open_router``), so a
promotion made anywhere takes over new requests atomically. Writing versions and aliases is
the registry's job (``openclone.registry``); reading them for routing lives here, below
both.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from openclone.store.db import Store
from openclone.store.tables import Alias, ModelVersion

__all__ = ["archived_versions", "resolution_map"]


def resolution_map(store: Store) -> tuple[dict[str, tuple[str, str]], dict[str, dict[str, Any]]]:
    """{requested name: (pinned name, router target)} for every alias and version, and the
    engine specs of versions that bring their own engine (keyed by pinned name)."""
    with store.session() as s:
        versions = list(s.scalars(select(ModelVersion)))
        aliases = {a.name: a.version for a in s.scalars(select(Alias))}
    out: dict[str, tuple[str, str]] = {}
    specs: dict[str, dict[str, Any]] = {}
    by_key = {(v.name, v.version): v for v in versions}
    for v in versions:
        if v.status == "archived":  # never served again (archived_versions lists them)
            continue
        pinned = f"{v.name}@{v.version}"
        out[pinned] = (pinned, v.target)
        if v.engine is not None:
            specs[pinned] = v.engine
    for name, version in aliases.items():
        found = by_key.get((name, version))
        if found is not None and found.status != "archived":
            # A fine-tuned model's ft: name has exactly one version: it is pinned already,
            # and clients see it as OpenAI shows it.
            shown = name if name.startswith("ft:") else f"{name}@{version}"
            out[name] = (shown, found.target)
    return out, specs


def archived_versions(store: Store) -> dict[str, str]:
    """{NAME@N: target} of every archived version: what running servers stop serving."""
    with store.session() as s:
        rows = s.execute(
            select(ModelVersion.name, ModelVersion.version, ModelVersion.target).where(
                ModelVersion.status == "archived"
            )
        )
        return {f"{name}@{version}": target for name, version, target in rows}
