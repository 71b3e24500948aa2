"""Erasure taint: the datasets and model versions built from data an erasure removed.

An erasure (:mod:`openclone.store.privacy`) marks, in its own transaction, every recorded
dataset that held an erased capture (a captures export, a loop's working file, a dataset
written by ``distill --from-captures``) and every registry version whose lineage names
one of them — by a hash the file had before the erasure rewrote it, or by its path — as
**tainted**. A loop whose promoted version is tainted retrains without the erased rows
(:mod:`openclone.loop.taint`), marks what it replaced **retrained** and, once its new
candidate passed the gate, archives the tainted versions (**archived**). ``openclone audit
erasures`` lists them all with their state; a version no loop keeps stays tainted until
someone retrains it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from openclone.store.db import Store
from openclone.store.tables import Export, ModelVersion, Taint, new_id, now
from openclone.store.upsert import dialect_insert

__all__ = [
    "TaintInfo",
    "list_taints",
    "mark_versions",
    "taint_erasure",
    "taint_lines",
    "tainted_versions",
]


@dataclass(frozen=True)
class TaintInfo:
    kind: str  # dataset | version
    target: str  # an export's id, or NAME@VERSION
    name: str | None
    version: int | None
    path: str | None
    erasures: list[str]
    state: str  # tainted | retrained | archived
    run_id: str | None  # the loop run that retrained it
    replaced_by: str | None  # NAME@VERSION promoted in its place
    created: float
    updated: float


def _info(t: Taint) -> TaintInfo:
    return TaintInfo(t.kind, t.target, t.name, t.version, t.path, list(t.erasures or []),
                     t.state, t.run_id, t.replaced_by, t.created, t.updated)  # fmt: skip


def _resolved(path: object) -> str:
    return str(Path(path).resolve()) if isinstance(path, str) and path else ""


def taint_erasure(
    s: Session, erasure_id: str, exports: Iterable[Export], datasets: Iterable[str]
) -> int:
    """Mark what erasure ``erasure_id`` reached: its ``exports`` and the versions trained
    on one of them (``datasets``: every hash those files had). Returns how many."""
    exports, hashes = list(exports), set(datasets)
    paths = {_resolved(x.path) for x in exports}
    marked = 0
    for x in exports:
        marked += _mark(s, erasure_id, "dataset", x.id, path=x.path)
    for v in s.scalars(select(ModelVersion)):
        lineage = v.lineage or {}
        sha, path = lineage.get("dataset_sha256"), _resolved(lineage.get("dataset"))
        if (isinstance(sha, str) and sha in hashes) or (path and path in paths):
            marked += _mark(s, erasure_id, "version", f"{v.name}@{v.version}", name=v.name,
                            version=v.version, path=lineage.get("dataset"))  # fmt: skip
    return marked


def _mark(s: Session, erasure_id: str, kind: str, target: str, **fields: Any) -> int:
    # One statement, not a look then an insert: two erasures marking one target at once
    # would both find no row and collide on the (kind, target) index on PostgreSQL.
    stamp = now()
    row = dict(id=new_id(), kind=kind, target=target, erasures=[], state="tainted",
               created=stamp, updated=stamp, **fields)  # fmt: skip
    s.execute(
        dialect_insert(s, Taint)
        .values(row)
        .on_conflict_do_nothing(index_elements=["kind", "target"])
    )
    # The row is ours now (locked until commit): add this erasure. Tainted again, whatever
    # became of it: a retrained dataset that held this capture too is not clean now.
    taint = s.scalars(
        select(Taint).where(Taint.kind == kind, Taint.target == target).with_for_update()
    ).one()
    taint.erasures = [*(taint.erasures or []), erasure_id]
    taint.state, taint.updated = "tainted", stamp
    return 1


def list_taints(store: Store, state: str | None = None) -> list[TaintInfo]:
    """Every taint, oldest first (``state`` filters)."""
    with store.session() as s:
        q = select(Taint).order_by(Taint.created, Taint.kind, Taint.target)
        if state is not None:
            q = q.where(Taint.state == state)
        return [_info(t) for t in s.scalars(q)]


def tainted_versions(store: Store, name: str) -> list[TaintInfo]:
    """The versions of registry model ``name`` still tainted, oldest first."""
    with store.session() as s:
        q = select(Taint).where(Taint.kind == "version", Taint.name == name,
                                Taint.state == "tainted").order_by(Taint.version)  # fmt: skip
        return [_info(t) for t in s.scalars(q)]


def mark_versions(
    store: Store,
    targets: Iterable[str],
    state: str,
    *,
    run_id: str | None = None,
    replaced_by: str | None = None,
) -> None:
    """Move the taints of ``targets`` (NAME@VERSION, or datasets' export ids) to ``state``."""
    targets = list(targets)
    if not targets:
        return
    with store.session() as s:
        s.execute(
            update(Taint)
            .where(Taint.target.in_(targets))
            .values(state=state, run_id=run_id, replaced_by=replaced_by, updated=now())
        )


def taint_lines(taints: Iterable[TaintInfo]) -> list[str]:
    """What ``openclone audit erasures`` says of each taint, for a person."""
    lines = []
    for t in taints:
        what = f"model {t.target}" if t.kind == "version" else f"dataset {t.target} ({t.path})"
        if t.state == "tainted":
            how = "tainted: built from erased data; retrain it"
        else:
            how = f"{t.state} by loop run {t.run_id}, replaced by {t.replaced_by}"
        lines.append(f"{what}: {how} (erasures {', '.join(t.erasures)})")
    return lines
