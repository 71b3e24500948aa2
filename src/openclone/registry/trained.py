"""Trained models enter the registry: one list of served models, with versions and aliases.

A training run writes its record next to its adapter (:mod:`openclone.store.trained`) — the
run's manifest: what it was trained on and how. The registry is where a run becomes a model
people name: :func:`register_trained` adds it as a version, with the record as its lineage.
A run's weights never change under its name (training refuses to overwrite a finished run),
so a version that targets ``BASE:RUN`` is as immutable as a GGUF file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from openclone.registry.versions import VersionInfo, list_versions, register, set_alias
from openclone.store.db import Store
from openclone.store.tables import Alias, ModelVersion
from openclone.store.trained import TrainedModel, get_trained, list_trained

__all__ = ["adopt_trained", "register_run", "register_trained", "trained_lineage"]


def trained_lineage(record: TrainedModel) -> dict[str, Any]:
    """What a version records of the run that made it (base, data, settings, results)."""
    return {
        "run": record.name,
        "base": record.base,
        "dataset": record.dataset,
        "dataset_sha256": record.dataset_sha256,
        "adapter": record.adapter_path,
        "training": record.config,
        "train_metrics": record.metrics,
    }


def register_trained(
    store: Store, record: TrainedModel, name: str | None = None, *, actor: str = "train"
) -> VersionInfo:
    """A version of ``name`` (the run's own name by default) serving the run.

    Idempotent: a run already registered under ``name`` returns that version (a resumed
    run that finishes again adds nothing). The first version of a run's own name also
    becomes its alias, because that name already serves the run; a version added to
    another model stays a candidate until promoted through the gate."""
    target = record.served_as
    name = name or record.name
    with store.session() as s:
        found = s.scalar(
            select(ModelVersion)
            .where(ModelVersion.name == name, ModelVersion.target == target)
            .order_by(ModelVersion.version)
        )
        version = found.version if found is not None else None
        aliased = s.get(Alias, name) is not None
    if version is not None:
        return _found(store, name, version)
    info = register(store, name, target, lineage=trained_lineage(record), actor=actor)
    if name == record.name and not aliased:
        set_alias(store, name, info.version, actor=actor)
        return _found(store, name, info.version)
    return info


def register_run(
    store: Store, run: str, also: str | None = None, home: Path | None = None
) -> list[VersionInfo]:
    """What a finished training run registers: ``RUN@1`` (aliased as ``RUN``) and, when
    ``also`` names a registry model, a new candidate version of it."""
    record = get_trained(run, home)
    out = [register_trained(store, record)]
    if also and also != record.name:
        out.append(register_trained(store, record, also))
    return out


def _found(store: Store, name: str, version: int) -> VersionInfo:
    return next(v for v in list_versions(store, name) if v.version == version)


def adopt_trained(store: Store, home: Path | None = None) -> list[VersionInfo]:
    """Register every recorded run that no version serves yet (runs trained before training
    registered its results); returns the versions it added."""
    with store.session() as s:
        served = set(s.scalars(select(ModelVersion.target)))
    added = []
    for record in reversed(list_trained(home)):  # oldest first: versions in training order
        if record.served_as not in served:
            added.append(register_trained(store, record, actor="adopt"))
    return added
