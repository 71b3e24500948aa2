"""What erased data had already become: erasure records, the exports (and distilled
datasets, :mod:`openclone.store.derived`) that held erased captures, and the registered
models and training runs trained on one of those files.

A model counts as built from erased data when its registry lineage names, as
``dataset_sha256``, a hash one of those export files had before the erasure rewrote it.
A dataset derived from an export (curated, deduplicated) has a hash of its own; training
straight from the export, or carrying the export's hash along, keeps the chain visible. A training run's record (:mod:`openclone.store.trained`) also
names its dataset's path, so a run trained on a version of the file no erasure hashed
(rows appended after the last registration) is still found.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from openclone.store.db import Store
from openclone.store.derived import is_derived
from openclone.store.tables import Erasure, Export, ModelVersion
from openclone.store.trained import list_trained

__all__ = [
    "AffectedExport",
    "AffectedModel",
    "AffectedRun",
    "ErasureRecord",
    "affected_exports",
    "affected_models",
    "affected_runs",
    "erasures_since",
]


@dataclass(frozen=True)
class ErasureRecord:
    id: str
    actor: str
    kind: str  # user|conversation|tenant|retention
    target: str
    counts: dict[str, int]
    captures: int
    exports: list[str]
    datasets: list[str]  # sha256 of every export file version that held erased captures
    created: float


@dataclass(frozen=True)
class AffectedExport:
    id: str
    path: str
    sha256: str  # the file now, without the erased rows
    held: list[str]  # the file's earlier hashes: datasets that contained erased data
    erasures: list[str]
    on_disk: bool
    created: float
    # export | distill (a dataset written by `distill --from-captures`) | loop (a loop
    # run's prompts, held-out or distilled set)
    kind: str = "export"


@dataclass(frozen=True)
class AffectedRun:
    """A training run (``<home>/models/<name>/record.json``) whose dataset held erased data."""

    name: str
    served_as: str  # BASE:NAME
    dataset: str
    dataset_sha256: str
    erasures: list[str]


@dataclass(frozen=True)
class AffectedModel:
    name: str
    version: int
    dataset_sha256: str
    erasures: list[str]


def erasures_since(
    store: Store, since: float | None = None, *, offset: int = 0, limit: int | None = None
) -> list[ErasureRecord]:
    """Erasure records, newest first, from ``since`` (epoch seconds) on;
    ``offset``/``limit`` page them."""
    with store.session() as s:
        q = select(Erasure).order_by(Erasure.created.desc()).offset(offset).limit(limit)
        if since is not None:
            q = q.where(Erasure.created >= since)
        return [
            ErasureRecord(e.id, e.actor, e.kind, e.target, dict(e.counts), len(e.capture_ids),
                          list(e.exports), list(e.datasets or []), e.created)
            for e in s.scalars(q)
        ]  # fmt: skip


def affected_exports(store: Store, since: float | None = None) -> list[AffectedExport]:
    """Exports that held data erased since ``since``, oldest export first."""
    erasures = erasures_since(store, since)
    by_export: dict[str, list[str]] = {}
    for e in reversed(erasures):
        for export_id in e.exports:
            by_export.setdefault(export_id, []).append(e.id)
    held = {h for e in erasures for h in e.datasets}
    if not by_export:
        return []
    with store.session() as s:
        rows = s.scalars(
            select(Export).where(Export.id.in_(list(by_export))).order_by(Export.created)
        )
        return [
            AffectedExport(
                x.id, x.path, x.sha256, [h for h in (x.hashes or []) if h in held],
                by_export[x.id], Path(x.path).is_file(), x.created,
                str((x.filters or {})["source"]) if is_derived(x) else "export",
            )
            for x in rows
        ]  # fmt: skip


def affected_models(store: Store, since: float | None = None) -> list[AffectedModel]:
    """Registered model versions whose training dataset held data erased since ``since``."""
    by_hash: dict[str, list[str]] = {}
    for e in reversed(erasures_since(store, since)):
        for h in e.datasets:
            by_hash.setdefault(h, []).append(e.id)
    if not by_hash:
        return []
    found = []
    with store.session() as s:
        for v in s.scalars(select(ModelVersion).order_by(ModelVersion.name, ModelVersion.version)):
            sha = (v.lineage or {}).get("dataset_sha256")
            if isinstance(sha, str) and sha in by_hash:
                found.append(AffectedModel(v.name, v.version, sha, by_hash[sha]))
    return found


def affected_runs(
    store: Store, since: float | None = None, home: Path | None = None
) -> list[AffectedRun]:
    """Training runs recorded under ``home`` whose dataset held data erased since ``since``:
    by the dataset's hash, or by its path when that file was rewritten by an erasure."""
    by_hash: dict[str, list[str]] = {}
    for e in reversed(erasures_since(store, since)):
        for h in e.datasets:
            by_hash.setdefault(h, []).append(e.id)
    by_path = {_resolved(x.path): x.erasures for x in affected_exports(store, since)}
    found = []
    for run in reversed(list_trained(home)):  # oldest first, like the registry's versions
        erasures = by_hash.get(run.dataset_sha256) or by_path.get(_resolved(run.dataset))
        if erasures:
            found.append(
                AffectedRun(run.name, run.served_as, run.dataset, run.dataset_sha256, erasures)
            )
    return found


def _resolved(path: str) -> str:
    return str(Path(path).resolve()) if path else ""
