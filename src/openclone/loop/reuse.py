"""Answers a run need not buy again: earlier runs' distilled rows for the same prompts.

A retrain after an erasure collects the tainted version's window again (loop/taint.py), so
most of its prompts were answered by the run it replaces, whose ``distilled.jsonl`` the
erasure has already rewritten without the erased rows. Before the distill step asks the
teacher anything, :func:`seed` copies into the new run's dataset the earlier rows whose
capture id *and* prompt hash match a prompt of this run, answered by the same teacher with
the same sampling (:func:`teacher_key`: a changed teacher is asked again). Distill then
treats them as rows of an earlier session of this run: it skips their prompts and counts
them toward the budget, and its bill holds only what was asked.

Reuse never brings an erased capture back: only prompts this run collected (captures
that exist now) are matched, and their captures are checked once more against the store
and the erasure tombstones (a rewrite of the earlier file may lag, or the file may be
unregistered). A reused row keeps its capture id, so an erasure reaches the new copy too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from openclone.distill.captures import prompt_id, prompt_of
from openclone.distill.output import RunState, state_path
from openclone.files import atomic_write
from openclone.loop.context import StepContext
from openclone.loop.state import list_runs
from openclone.loop.taint import register_file
from openclone.store.db import Store
from openclone.store.tables import Capture, ErasedCapture

if TYPE_CHECKING:
    from openclone.distill.recipe import DistillRequest

__all__ = ["REUSED", "reused_rows", "seed", "teacher_key"]

REUSED = "reused_from"  # a reused row's metadata: the run number it was answered in
_SECRET = ("key", "token", "secret", "password")  # a rotated credential asks nothing anew
_CHUNK = 500  # ids per IN (...) list: well under every backend's parameter limit
Key = tuple[str, str]  # (capture id, prompt id)


def teacher_key(ctx: StepContext, request: DistillRequest) -> str:
    """What made an answer: the teacher's catalog entry (engine and parameters, without
    credentials) and the sampling of answers. Equal keys: an answer may be reused."""
    entry = ctx.settings.model(request.teacher or "")
    specs = [
        (engine, _public(params))
        for engine, params in (entry.replica_specs() if entry is not None else [])
    ]
    what = {
        "teacher": request.teacher,
        "entry": specs,
        "base_url": request.base_url,
        "temperature": request.answer_temperature,
        "max_tokens": request.answer_max_tokens,
        "system": request.system,
        "keep_truncated": request.keep_truncated,
    }
    text = json.dumps(what, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _secret(name: str) -> bool:
    name = name.lower()
    return any(s in name for s in _SECRET) or "auth" in name


def _public(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` without credentials, in headers too (Azure's ``api-key``, ``Authorization``)."""
    out: dict[str, Any] = {}
    for k, v in sorted(params.items()):
        if _secret(k):
            continue
        if k == "headers" and isinstance(v, dict):
            v = {h: x for h, x in sorted(v.items()) if not _secret(str(h))}
        out[k] = v
    return out


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    try:
        f = path.open(encoding="utf-8")
    except OSError:  # gone (the run's files removed): nothing to reuse from it
        return
    with f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and isinstance(row.get("metadata"), dict):
                yield row


def _earlier(ctx: StepContext, key: str, wanted: set[Key]) -> dict[Key, tuple[dict[str, Any], int]]:
    """The answers to ``wanted`` in this loop's earlier finished distills made with
    ``key``, newest first, by (capture id, prompt id); only those are held in memory."""
    found: dict[Key, tuple[dict[str, Any], int]] = {}
    for run in list_runs(ctx.store, ctx.config.name):
        if len(found) == len(wanted):
            break  # every prompt has its answer: older runs need not be read
        step = run.step("distill")
        if run.id == ctx.run.id or step is None or step.state != "done":
            continue
        if step.outputs.get("teacher_key") != key or not step.outputs.get("dataset"):
            continue
        for row in _rows(Path(str(step.outputs["dataset"]))):
            meta = row["metadata"]
            cid, pid = meta.get("capture_id"), meta.get("prompt_id")
            if (
                isinstance(cid, str)
                and isinstance(pid, str)
                and (cid, pid) in wanted
                and meta.get("teacher") == ctx.config.teacher
            ):
                found.setdefault((cid, pid), (row, run.number))
    return found


def _live(store: Store, ids: set[str]) -> set[str]:
    """The captures among ``ids`` that exist and no erasure buried."""
    wanted, alive = sorted(ids), set()
    with store.session() as s:
        for i in range(0, len(wanted), _CHUNK):
            chunk = wanted[i : i + _CHUNK]
            alive |= set(s.scalars(select(Capture.id).where(Capture.id.in_(chunk))))
            alive -= set(s.scalars(
                select(ErasedCapture.capture_id).where(ErasedCapture.capture_id.in_(chunk))
            ))  # fmt: skip
    return alive


def seed(ctx: StepContext, out: Path, prompts: Path, key: str, limit: int) -> int:
    """Start ``out`` with up to ``limit`` earlier answers to ``prompts`` (in their order);
    the rows written. A dataset already begun (a resumed step) is left as it is."""
    if out.exists():
        return 0
    asked: list[Key] = []  # this run's prompts, in order
    for row in _rows(prompts):
        cid = row["metadata"].get("capture_id")
        if isinstance(cid, str):
            asked.append((cid, prompt_id(prompt_of(row.get("messages") or []))))
    earlier = _earlier(ctx, key, set(asked)) if asked else {}
    if not earlier:
        return 0
    chosen: list[tuple[dict[str, Any], int]] = []
    seen: set[str] = set()
    for cid, pid in asked:
        match = earlier.get((cid, pid))
        if match is not None and pid not in seen:
            seen.add(pid)
            chosen.append(match)
    alive = _live(ctx.store, {r["metadata"]["capture_id"] for r, _ in chosen})
    chosen = [(r, n) for r, n in chosen if r["metadata"]["capture_id"] in alive][:limit]
    if not chosen:
        return 0
    lines = [
        json.dumps({**row, "metadata": {**row["metadata"], REUSED: number}}, ensure_ascii=False)
        for row, number in chosen
    ]
    # The state first, then the rows: distill continues a dataset only with its state
    # beside it, and a crash between the two leaves no dataset, so this runs again.
    state = RunState("prompts", ctx.config.teacher, {"prompts": str(prompts)}, kept=len(lines))
    atomic_write(state_path(out), json.dumps(state.to_dict(), ensure_ascii=False, indent=1) + "\n")
    atomic_write(out, "\n".join(lines) + "\n")
    register_file(ctx, out)  # captured text in a new file: an erasure must reach it now
    return len(lines)


def reused_rows(out: Path) -> int:
    """Rows of ``out`` copied from an earlier run (an erasure may have removed some)."""
    return sum(1 for row in _rows(out) if REUSED in row["metadata"])
