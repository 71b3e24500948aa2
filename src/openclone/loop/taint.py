"""Erasure-aware retraining: a loop replaces the versions an erasure tainted.

An erasure marks the datasets that held erased captures and the registry versions trained
on them as tainted (:mod:`openclone.store.taint`). Here the loop answers it:

* **due** — a loop whose promoted version is tainted is due at once (``retrain_on_erasure
  = "now"``, the default) or on its next turn (``"next"``);
* **retrain without the erased rows** — that run collects again from where the tainted
  version's own run began (the erased captures are gone from the store, so they cannot
  come back), not only what arrived since the last run; its distill step pays only for
  prompts no earlier run answered with the same teacher (:mod:`openclone.loop.reuse`);
* **promote through the same gate, then archive** — once the run's candidate is promoted
  (the gate is :func:`openclone.registry.versions.promote`, unchanged), the tainted
  versions of the loop's model are archived and the loop's tainted files marked retrained,
  each naming the run and the version that replaced it.

Every file a run writes from captures is registered here too (:func:`register_file`), so
an erasure rewrites it and ``openclone audit erasures`` lists it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from openclone.errors import ModelNotFound
from openclone.loop.config import LoopConfig, LoopError
from openclone.loop.context import StepContext
from openclone.loop.state import list_runs
from openclone.registry.versions import archive, get_version, retire
from openclone.store.db import Store
from openclone.store.derived import LOOP, register_dataset
from openclone.store.taint import TaintInfo, list_taints, mark_versions, tainted_versions

__all__ = ["Retrain", "due_now", "register_file", "retrain", "settle"]


@dataclass(frozen=True)
class Retrain:
    """Why a run collects a wider window: the tainted promoted version it replaces."""

    version: str  # NAME@VERSION
    since: float | None  # where that version's own run began collecting (None: the start)


def register_file(ctx: StepContext, path: Path) -> None:
    """Record a run file written from captures (rows with ``metadata.capture_id``), so an
    erasure rewrites it; rows of captures erased meanwhile are dropped now."""
    cfg = ctx.config
    try:
        register_dataset(ctx.store, path, actor=f"loop:{cfg.name}",
                         source={"loop": cfg.name, "run": ctx.run.number}, kind=LOOP)  # fmt: skip
    except OSError as exc:  # not registered, an erasure would miss it: the step must fail
        raise LoopError(f"cannot register {path} for erasure: {exc}") from exc


def _tainted_promoted(store: Store, config: LoopConfig) -> TaintInfo | None:
    try:
        promoted = get_version(store, config.model).version
    except ModelNotFound:
        return None
    return next((t for t in tainted_versions(store, config.model) if t.version == promoted), None)


def due_now(store: Store, config: LoopConfig) -> bool:
    """Whether an erasure tainted the promoted version since the loop's last run began."""
    if config.retrain_on_erasure != "now":
        return False
    taint = _tainted_promoted(store, config)
    if taint is None:
        return False
    runs = list_runs(store, config.name, limit=1)
    return not runs or runs[0].created < taint.updated


def retrain(ctx: StepContext) -> Retrain | None:
    """The tainted promoted version this run replaces, and where to collect from."""
    taint = _tainted_promoted(ctx.store, ctx.config)
    if taint is None:
        return None
    for run in list_runs(ctx.store, ctx.config.name):
        trained, collected = run.step("train"), run.step("collect")
        if trained is not None and trained.outputs.get("version") == taint.version:
            since = collected.outputs.get("since") if collected is not None else None
            return Retrain(taint.target, since)
    return Retrain(taint.target, None)  # not trained by this loop: everything consented


def _under(path: str | None, folder: str) -> bool:
    return bool(path) and str(Path(str(path)).resolve()).startswith(folder + "/")


def settle(ctx: StepContext, promoted: str) -> list[str]:
    """After ``promoted`` passed the gate: archive the tainted versions of the loop's model,
    mark the loop's tainted files retrained; what was archived."""
    cfg, store, actor = ctx.config, ctx.store, f"loop:{ctx.config.name}"
    archived = []
    runs: set[str] = set()
    for t in tainted_versions(store, cfg.model):
        if t.target == promoted or t.version is None:
            continue
        archive(store, cfg.model, t.version, actor=actor)
        archived.append(t.target)
        run = get_version(store, cfg.model, t.version).lineage.get("run")
        if isinstance(run, str):
            runs.add(run)
    # The same training runs' own names (each its own alias) stop answering too: the
    # weights are the tainted ones, and while any live version serves a run its adapter
    # stays loaded. The loop's files they were built from are marked replaced.
    loops_dir = str((ctx.settings.home / "loops" / cfg.name).resolve())
    for t in list_taints(store, "tainted"):
        if t.kind == "version" and t.name in runs and t.version is not None:
            retire(
                store,
                t.name,
                t.version,
                actor=actor,
                reason=f"trained on erased data; {promoted} replaces it",
            )
            archived.append(t.target)
    mark_versions(store, archived, "archived", run_id=ctx.run.id, replaced_by=promoted)
    replaced = [
        t.target
        for t in list_taints(store, "tainted")
        if t.kind == "dataset" and _under(t.path, loops_dir)
    ]
    mark_versions(store, replaced, "retrained", run_id=ctx.run.id, replaced_by=promoted)
    if archived:
        ctx.say(f"archived {', '.join(archived)} (trained on erased data), replaced by {promoted}")
    return archived
