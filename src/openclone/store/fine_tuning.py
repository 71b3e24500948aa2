"""Fine-tuning jobs and their events as the store keeps them, scoped to their tenant.

The jobs themselves run as detached ``train`` jobs (:mod:`openclone.jobs.fine_tuning`
starts and follows them); these rows are what the API shows: OpenAI's status, the
``ft:`` name, the events. Another tenant's job is "not found".
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from openclone.errors import APIError
from openclone.procs import kill_group
from openclone.store.accounts import ensure_tenant, find_tenant
from openclone.store.db import BULK, Store
from openclone.store.paging import beyond, listing_order
from openclone.store.tables import FineTuningEvent, FineTuningJob, now
from openclone.store.upsert import dialect_insert

__all__ = [
    "ACTIVE",
    "ERASED_OWNER",
    "FINAL",
    "JobNotFound",
    "active_job_ids",
    "add_event",
    "erase_tenant_jobs",
    "event_object",
    "get_job_row",
    "insert_job",
    "job_object",
    "list_events",
    "list_job_rows",
    "load_job_row",
    "model_owners",
    "tenant_org",
    "update_job",
]

FINAL = frozenset({"succeeded", "failed", "cancelled"})
ACTIVE = ("validating_files", "queued", "running")  # a train job may be working on these
_ORG = re.compile(r"[A-Za-z0-9_.-]{1,40}")
# The owner of an erased tenant's model names: no tenant (a name cannot be empty), so the
# names stay taken and no one but an admin is served what an engine may still hold.
ERASED_OWNER = ""


class JobNotFound(APIError):
    status_code = 404
    error_type = "invalid_request_error"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"Could not find fine-tuning job: {job_id}", param="fine_tuning_job_id")


def tenant_org(store: Store, tenant: str) -> str:
    """The ORG of ``ft:BASE:ORG:SUFFIX:ID``: the tenant's name, or its id when the name
    would not fit in a model name."""
    if _ORG.fullmatch(tenant):
        return tenant
    with store.session() as s:
        return ensure_tenant(s, tenant).id


def model_owners(store: Store) -> dict[str, str]:
    """{model name: tenant name} for the names every fine-tuning job gives its model (its
    ``ft:`` name and its run's registry name), from the job's creation on: a name is its
    tenant's before the model exists, so no gateway can serve it to another in between.
    An erased tenant's names map to :data:`ERASED_OWNER`, nobody."""
    from openclone.store.tables import ErasedModel, Tenant

    q = select(FineTuningJob.ft_name, FineTuningJob.run_name, Tenant.name).join(
        Tenant, FineTuningJob.tenant_id == Tenant.id
    )
    with store.session() as s:
        owners = {name: ERASED_OWNER for name in s.scalars(select(ErasedModel.name))}
        owners.update({name: tenant for ft, run, tenant in s.execute(q) for name in (ft, run)})
        return owners


def insert_job(store: Store, tenant: str, row: FineTuningJob, events: list[str]) -> None:
    with store.session() as s:
        row.tenant_id = ensure_tenant(s, tenant).id
        s.add(row)
        s.flush()
        for message in events:
            s.add(FineTuningEvent(job_id=row.id, message=message, created=row.created))


def load_job_row(store: Store, job_id: str) -> FineTuningJob:
    """The row, whoever owns it (the server's own follow-up of running jobs)."""
    with store.session() as s:
        row = s.get(FineTuningJob, job_id)
        if row is None:
            raise JobNotFound(job_id)
        return row


def get_job_row(store: Store, tenant: str, job_id: str) -> FineTuningJob:
    with store.session() as s:
        return _owned(s, tenant, job_id)


def _owned(s: Session, tenant: str, job_id: str) -> FineTuningJob:
    t = find_tenant(s, tenant)
    row = s.get(FineTuningJob, job_id) if t is not None else None
    if row is None or t is None or row.tenant_id != t.id:
        raise JobNotFound(job_id)
    return row


def update_job(
    store: Store, job_id: str, *, events: Sequence[tuple[str, str, str, Any]] = (), **values: Any
) -> None:
    """Set ``values`` on the job and add ``events`` ((level, kind, message, data) each) in
    one transaction."""
    with store.session() as s:
        if values:
            s.execute(update(FineTuningJob).where(FineTuningJob.id == job_id).values(**values))
        for level, kind, message, data in events:
            s.add(FineTuningEvent(job_id=job_id, level=level, kind=kind, message=message,
                                  data=data, created=now()))  # fmt: skip


def add_event(
    store: Store, job_id: str, message: str, *, level: str = "info", data: Any = None
) -> None:
    update_job(store, job_id, events=[(level, "message", message, data)])


def list_job_rows(
    store: Store,
    tenant: str,
    *,
    after: str | None = None,
    limit: int = 20,
    metadata: dict[str, str] | None = None,
) -> tuple[list[FineTuningJob], bool]:
    """A page of the tenant's jobs, newest first, after the job ``after``."""
    with store.session() as s:
        t = find_tenant(s, tenant)
        if t is None:
            return [], False
        q = select(FineTuningJob).where(FineTuningJob.tenant_id == t.id)
        keys = (FineTuningJob.created, FineTuningJob.id)
        if after:
            cursor = _owned(s, tenant, after)
            q = q.where(beyond(*keys, cursor.created, cursor.id, True))
        q = q.order_by(*listing_order(*keys, True))
        rows = list(s.scalars(q))
    if metadata:  # JSON filters differ per backend; a tenant's job list is short
        rows = [
            r for r in rows if all((r.metadata_ or {}).get(k) == v for k, v in metadata.items())
        ]
    return rows[:limit], len(rows) > limit


def active_job_ids(store: Store) -> list[str]:
    """Jobs a train job may still be working on, every tenant's."""
    with store.session() as s:
        return list(s.scalars(select(FineTuningJob.id).where(FineTuningJob.status.in_(ACTIVE))))


def list_events(
    store: Store, tenant: str, job_id: str, *, after: str | None = None, limit: int = 20
) -> tuple[list[FineTuningEvent], bool]:
    """A page of the job's events, newest first, after the event ``after``."""
    with store.session() as s:
        _owned(s, tenant, job_id)
        q = select(FineTuningEvent).where(FineTuningEvent.job_id == job_id)
        if after:
            number = after.removeprefix("ftevent-")
            cursor = int(number) if number.isdigit() and len(number) < 19 else 0
            q = q.where(FineTuningEvent.id < cursor)
        q = q.order_by(FineTuningEvent.id.desc()).limit(limit + 1)
        rows = list(s.scalars(q))
    return rows[:limit], len(rows) > limit


def event_object(ev: FineTuningEvent) -> dict[str, Any]:
    return {
        "object": "fine_tuning.job.event", "id": f"ftevent-{ev.id}",
        "created_at": int(ev.created), "level": ev.level, "message": ev.message,
        "data": ev.data or {}, "type": ev.kind,
    }  # fmt: skip


def job_object(row: FineTuningJob) -> dict[str, Any]:
    """The ``fine_tuning.job`` object as OpenAI returns it."""
    hyper = dict(row.hyperparameters)
    return {
        "object": "fine_tuning.job",
        "id": row.id,
        "created_at": int(row.created),
        "error": row.error,
        "fine_tuned_model": row.fine_tuned_model,
        "finished_at": int(row.finished) if row.finished else None,
        "hyperparameters": hyper,
        "model": row.model,
        "organization_id": row.ft_name.split(":")[2],
        "result_files": list(row.result_files),
        "seed": row.seed,
        "status": row.status,
        "trained_tokens": row.trained_tokens,
        "training_file": row.training_file,
        "validation_file": row.validation_file,
        "estimated_finish": None,
        "integrations": [],
        "metadata": row.metadata_,
        "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}},
        "user_provided_suffix": row.suffix,
    }


def erase_tenant_jobs(s: Session, tenant_id: str) -> dict[str, int]:
    """A tenant's erasure, for what the Files, fine-tuning and Batch APIs keep: its files,
    batches and fine-tuning jobs go (events and results with them), and so do the files
    its jobs wrote outside the store — the copies of its training data, the job and run
    directories with the trained adapter — and the registry names of those models, whose
    names stay behind as tombstones (an engine may still hold the adapter: no tenant may
    be served it, see :func:`model_owners`)."""
    from openclone.store.tables import Alias, Batch, ErasedModel, ModelVersion, StoredFile

    jobs = list(s.scalars(select(FineTuningJob).where(FineTuningJob.tenant_id == tenant_id)))
    names = [n for j in jobs for n in (j.ft_name, j.run_name)]
    counts = {
        "files": _count(s, delete(StoredFile).where(StoredFile.tenant_id == tenant_id)),
        "batches": _count(s, delete(Batch).where(Batch.tenant_id == tenant_id)),
        "fine_tuning_jobs": _count(
            s, delete(FineTuningJob).where(FineTuningJob.tenant_id == tenant_id)
        ),
    }
    if names:
        s.execute(delete(Alias).where(Alias.name.in_(names)), execution_options=BULK)
        s.execute(delete(ModelVersion).where(ModelVersion.name.in_(names)), execution_options=BULK)
        stamp = now()
        s.execute(
            dialect_insert(s, ErasedModel)
            .values([{"name": n, "created": stamp} for n in set(names)])
            .on_conflict_do_nothing(index_elements=["name"])
        )
    # A job still training would go on reading the tenant's data and writing its adapter
    # (into the directories about to go): its worker is stopped first, without the grace a
    # cancel gives it to checkpoint, which would only write more.
    for path in (Path(p) for j in jobs for p in j.paths):
        _stop_worker(path)
    for path in (Path(p) for j in jobs for p in j.paths):
        shutil.rmtree(path, ignore_errors=True)
    return counts


def _stop_worker(job_dir: Path) -> None:
    """Kill the worker a job directory's ``status.json`` names (see
    :mod:`openclone.jobs.runner`), if it is still running on this machine."""
    try:
        status = json.loads((job_dir / "status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # not a job directory (the data or run directory), or no worker yet
    pid = status.get("pid") if isinstance(status, dict) else None
    if not isinstance(pid, int) or status.get("state") in ("succeeded", "failed", "cancelled"):
        return
    if not kill_group(pid, status.get("pid_start"), str(status.get("id") or "")):
        log.warning("%s: its worker (pid %d) did not stop after SIGKILL", job_dir, pid)


log = logging.getLogger("openclone.store")


def _count(s: Session, stmt: Any) -> int:
    return int(s.execute(stmt, execution_options=BULK).rowcount)  # type: ignore[attr-defined]
