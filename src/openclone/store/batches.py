"""Batches of the Batch API as the store keeps them, scoped to their tenant.

A batch is checked and recorded here; the server answers its requests in the background
(:mod:`openclone.gateway.batches_serving`) and records each answer as it comes
(:func:`record_results`), so a restarted server goes on where it stopped. When the batch
ends — completed, expired at its deadline, or cancelled — its answers become an output
file and an error file (purpose ``batch_output``), one line per request in input order.

Gateways sharing a store run each batch once: a runner first claims the batch's lease
(:func:`claim_batch`, one conditional UPDATE: exactly one claimer wins) and renews it while
it runs; answers are recorded, and the batch finished, only by the lease's holder. A lease
that runs out (its gateway died) is taken over, and the new runner answers only the lines
not yet answered. Answers are sealed like captures until they become the batch's files.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from openclone.errors import APIError, InvalidRequestError
from openclone.store.accounts import Principal, ensure_tenant, ensure_user, find_tenant
from openclone.store.db import BULK, Store, bulk
from openclone.store.files import add_file, file_content, get_file
from openclone.store.paging import beyond, listing_order
from openclone.store.sealed import open_batch_result, seal_batch_result
from openclone.store.tables import Batch, BatchResult, StoredFile, Tenant, now

__all__ = [
    "LEASE_SECONDS",
    "LOST",
    "RUNNING",
    "BatchNotFound",
    "BatchWork",
    "batch_object",
    "cancel_batch",
    "claim_batch",
    "create_batch",
    "erase_person_batches",
    "finish_batch",
    "get_batch",
    "list_batches",
    "load_work",
    "pending_batch_ids",
    "record_results",
    "renew_lease",
    "start_batch",
]

WINDOWS = {"24h": 24 * 3600.0}
RUNNING = ("validating", "in_progress", "finalizing", "cancelling")
# How long a claim holds without renewal: a runner renews well within it, so only a gateway
# that died (or lost the database for that long) loses its batches to another.
LEASE_SECONDS = 60.0
LOST = "lost"  # what the runner's calls answer once the lease is another gateway's


class BatchNotFound(APIError):
    status_code = 404
    error_type = "invalid_request_error"

    def __init__(self, batch_id: str) -> None:
        super().__init__(f"No batch found with id '{batch_id}'.", param="batch_id")


def jsonl_rows(data: bytes) -> list[tuple[int, dict[str, Any]]]:
    """(line number, request) of a batch file, checked when it was uploaded."""
    return [(n, json.loads(raw)) for n, raw in enumerate(data.split(b"\n"), 1) if raw.strip()]


def create_batch(
    store: Store,
    who: Principal,
    endpoint: str,
    input_file_id: str,
    completion_window: str,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Check the input file (the tenant's, purpose ``batch``, every line for ``endpoint``)
    and record the batch; the server's batch runner picks it up."""
    if completion_window not in WINDOWS:
        raise InvalidRequestError(
            f"Invalid value for 'completion_window': {completion_window!r}; only '24h' is "
            "supported.",
            param="completion_window",
        )
    record = get_file(store, who.tenant, input_file_id, "input_file_id")
    if record.purpose != "batch":
        raise InvalidRequestError(
            f"File {input_file_id} has purpose {record.purpose!r}; a batch reads a file "
            "uploaded with purpose 'batch'",
            param="input_file_id", code="invalid_file_purpose",
        )  # fmt: skip
    total = 0
    for number, row in jsonl_rows(file_content(store, who.tenant, input_file_id)):
        if row.get("url") != endpoint:
            raise InvalidRequestError(
                f"Line {number} of {input_file_id} is a request to {row.get('url')!r}; every "
                f"request of a batch to {endpoint} must be to that endpoint.",
                param="input_file_id", code="invalid_request_url",
            )  # fmt: skip
        total += 1
    created = now()
    row_ = Batch(
        id="batch_" + secrets.token_hex(12), endpoint=endpoint, input_file_id=input_file_id,
        completion_window=completion_window, status="validating", metadata_=metadata,
        caller={"user": who.user, "key_id": who.key_id, "scope": who.scope},
        total=total, completed=0, failed=0, usage={}, created=created,
        expires_at=created + WINDOWS[completion_window],
    )  # fmt: skip
    with store.session() as s:
        t = ensure_tenant(s, who.tenant)
        row_.tenant_id = t.id
        row_.user_id = ensure_user(s, t, who.user).id if who.user else None
        s.add(row_)
    return batch_object(row_)


def batch_object(row: Batch) -> dict[str, Any]:
    """The ``batch`` object as OpenAI returns it."""

    def at(t: float | None) -> int | None:
        return int(t) if t else None

    usage = row.usage or {}
    tokens_in, tokens_out = int(usage.get("input", 0)), int(usage.get("output", 0))
    return {
        "id": row.id, "object": "batch", "endpoint": row.endpoint, "errors": (
            {"object": "list", "data": row.errors} if row.errors else None
        ),
        "input_file_id": row.input_file_id, "completion_window": row.completion_window,
        "status": row.status, "output_file_id": row.output_file_id,
        "error_file_id": row.error_file_id, "created_at": int(row.created),
        "in_progress_at": at(row.in_progress_at), "expires_at": at(row.expires_at),
        "finalizing_at": at(row.finalizing_at), "completed_at": at(row.completed_at),
        "failed_at": at(row.failed_at), "expired_at": at(row.expired_at),
        "cancelling_at": at(row.cancelling_at), "cancelled_at": at(row.cancelled_at),
        "request_counts": {"total": row.total, "completed": row.completed, "failed": row.failed},
        "usage": {
            "input_tokens": tokens_in, "output_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
        "metadata": row.metadata_,
    }  # fmt: skip


def _owned(s: Session, tenant: str, batch_id: str) -> Batch:
    t = find_tenant(s, tenant)
    row = s.get(Batch, batch_id) if t is not None else None
    if row is None or t is None or row.tenant_id != t.id:
        raise BatchNotFound(batch_id)
    return row


def get_batch(store: Store, tenant: str, batch_id: str) -> dict[str, Any]:
    with store.session() as s:
        return batch_object(_owned(s, tenant, batch_id))


def list_batches(
    store: Store, tenant: str, *, after: str | None = None, limit: int = 20
) -> tuple[list[dict[str, Any]], bool]:
    """A page of the tenant's batches, newest first, after the batch ``after``."""
    with store.session() as s:
        t = find_tenant(s, tenant)
        if t is None:
            return [], False
        q = select(Batch).where(Batch.tenant_id == t.id)
        if after:
            cursor = _owned(s, tenant, after)
            q = q.where(beyond(Batch.created, Batch.id, cursor.created, cursor.id, True))
        q = q.order_by(*listing_order(Batch.created, Batch.id, True)).limit(limit + 1)
        rows = list(s.scalars(q))
    return [batch_object(r) for r in rows[:limit]], len(rows) > limit


def cancel_batch(store: Store, tenant: str, batch_id: str) -> dict[str, Any]:
    """Ask for the batch to stop: ``cancelling`` until the runner writes what it has."""
    with store.session() as s:
        row = _owned(s, tenant, batch_id)
        if row.status in ("validating", "in_progress", "finalizing"):
            row.status, row.cancelling_at = "cancelling", now()
        elif row.status not in ("cancelling", "cancelled"):
            raise InvalidRequestError(
                f"Batch {batch_id} is {row.status}; it cannot be cancelled.", param="batch_id"
            )
        return batch_object(row)


# ---- the runner's side -------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchWork:
    """What the runner needs of a batch: who asks, where, by when, and what is left."""

    id: str
    tenant: str
    caller: Principal
    endpoint: str
    status: str
    expires_at: float
    requests: list[tuple[int, dict[str, Any]]]  # (line, request line) not yet answered


def pending_batch_ids(store: Store, owner: str, *, at: float | None = None) -> list[str]:
    """Batches to run, oldest first: those no other gateway holds a live lease on."""
    t = now() if at is None else at
    with store.session() as s:
        q = (
            select(Batch.id)
            .where(Batch.status.in_(RUNNING), _claimable(owner, t))
            .order_by(Batch.created)
        )
        return list(s.scalars(q))


def _claimable(owner: str, at: float) -> Any:
    return or_(Batch.lease_owner.is_(None), Batch.lease_owner == owner, Batch.lease_until < at)


def claim_batch(
    store: Store, batch_id: str, owner: str, *, ttl: float = LEASE_SECONDS, at: float | None = None
) -> bool:
    """Take the batch's lease for ``owner`` if it is free, already ``owner``'s, or ran out.
    One conditional UPDATE: of gateways claiming at once, exactly one sees its row change
    (PostgreSQL re-checks the condition on the row the winner committed)."""
    t = now() if at is None else at
    with store.session() as s:
        result = s.execute(
            update(Batch)
            .where(Batch.id == batch_id, Batch.status.in_(RUNNING), _claimable(owner, t))
            .values(lease_owner=owner, lease_until=t + ttl),
            execution_options=BULK,
        )
        return int(result.rowcount) == 1  # type: ignore[attr-defined]


def renew_lease(
    store: Store, batch_id: str, owner: str, *, ttl: float = LEASE_SECONDS, at: float | None = None
) -> bool:
    """Extend ``owner``'s lease; False when it is no longer theirs (or the batch is gone)."""
    t = now() if at is None else at
    with store.session() as s:
        result = s.execute(
            update(Batch)
            .where(Batch.id == batch_id, Batch.lease_owner == owner)
            .values(lease_until=t + ttl),
            execution_options=BULK,
        )
        return int(result.rowcount) == 1  # type: ignore[attr-defined]


def _held(s: Session, batch_id: str, owner: str, ttl: float = LEASE_SECONDS) -> Batch | None:
    """The batch, if ``owner``'s lease on it is live; the lease is renewed.

    The check is the transaction's first statement and a write (not a locking read:
    SQLite ignores FOR UPDATE, and pysqlite begins the transaction only at the first
    write), so on both backends the row stays the holder's until this transaction ends:
    a claim by another gateway waits for it, then finds the lease renewed."""
    t = now()
    renewed = s.execute(
        update(Batch)
        .where(Batch.id == batch_id, Batch.lease_owner == owner, Batch.lease_until >= t)
        .values(lease_until=t + ttl),
        execution_options=BULK,
    )
    if int(renewed.rowcount) != 1:  # type: ignore[attr-defined]
        return None
    return s.get(Batch, batch_id, populate_existing=True)


def load_work(store: Store, batch_id: str, owner: str) -> BatchWork | None:
    """The batch's unanswered requests; None when its input file is gone (it fails)."""
    with store.session() as s:
        row = s.get(Batch, batch_id)
        if row is None:
            return None
        tenant = s.get(Tenant, row.tenant_id)
        done = set(s.scalars(select(BatchResult.line).where(BatchResult.batch_id == batch_id)))
    name = tenant.name if tenant is not None else ""
    who = Principal(tenant=name, user=row.caller.get("user"), key_id=row.caller.get("key_id"),
                    scope=row.caller.get("scope", "user"))  # fmt: skip
    try:
        data = file_content(store, name, row.input_file_id)
    except APIError:
        finish_batch(store, batch_id, "failed", owner=owner, errors=[{
            "code": "input_file_missing", "line": None, "param": "input_file_id",
            "message": f"The input file {row.input_file_id} was deleted before the batch ran.",
        }])  # fmt: skip
        return None
    todo = [(n, r) for n, r in jsonl_rows(data) if n not in done]
    return BatchWork(row.id, name, who, row.endpoint, row.status, row.expires_at, todo)


def start_batch(store: Store, batch_id: str, owner: str) -> str:
    """Mark it in progress (once); its status now (:data:`LOST`: not ``owner``'s)."""
    with store.session() as s:
        row = _held(s, batch_id, owner)
        if row is None:
            return LOST
        if row.status == "validating":
            row.status, row.in_progress_at = "in_progress", now()
        return row.status


def record_results(
    store: Store,
    batch_id: str,
    owner: str,
    results: Sequence[tuple[int, bool, dict[str, Any], int, int]],
    *,
    ttl: float = LEASE_SECONDS,
) -> tuple[str, float]:
    """Keep answers ((line, ok, output line, tokens in, tokens out) each) and renew the
    lease; the batch's status and deadline now (a cancel, or a deadline changed,
    elsewhere). Status :data:`LOST` when the lease is not ``owner``'s any more (another
    gateway took the batch over, it ran out, or the batch was erased): the answers are
    not kept."""
    with store.session() as s:
        row = _held(s, batch_id, owner, ttl)
        if row is None:
            return LOST, 0.0
        usage = dict(row.usage or {})
        for line, ok, body, tokens_in, tokens_out in results:
            sealed = seal_batch_result(s, row.tenant_id, batch_id, line, body)
            s.add(BatchResult(batch_id=batch_id, line=line, ok=ok, body=sealed,
                              tokens_in=tokens_in, tokens_out=tokens_out))  # fmt: skip
            if ok:
                row.completed += 1
            else:
                row.failed += 1
            usage["input"] = int(usage.get("input", 0)) + tokens_in
            usage["output"] = int(usage.get("output", 0)) + tokens_out
        row.usage = usage
        return row.status, row.expires_at


def finish_batch(
    store: Store,
    batch_id: str,
    status: str,
    *,
    owner: str,
    unanswered: Sequence[tuple[int, dict[str, Any]]] = (),
    errors: list[dict[str, Any]] | None = None,
) -> bool:
    """End the batch as ``status`` (completed, expired, cancelled, failed): its answers
    become the output file (successes) and the error file (failures, and an error line for
    each request in ``unanswered``), in input order.

    One transaction, holding the batch's row: a batch erased (with its person or tenant)
    or taken over meanwhile is left alone — False — and its files are never written, so
    nothing re-creates what an erasure removed."""
    reason = {"expired": ("batch_expired", "This request could not be executed before the "
                          "completion window expired."),
              "cancelled": ("batch_cancelled", "This request was not executed: the batch was "
                            "cancelled.")}.get(status)  # fmt: skip
    with store.session() as s:
        row = _held(s, batch_id, owner)
        if row is None:
            return False
        results = s.scalars(
            select(BatchResult).where(BatchResult.batch_id == batch_id).order_by(BatchResult.line)
        )
        lines: list[tuple[int, bool, dict[str, Any]]] = [
            (r.line, r.ok, open_batch_result(s, row.tenant_id, batch_id, r.line, r.body))
            for r in results
        ]
        if reason is not None:
            for line, request in unanswered:
                code, message = reason
                lines.append((line, False, {
                    "id": "batch_req_" + secrets.token_hex(12),
                    "custom_id": request.get("custom_id"), "response": None,
                    "error": {"code": code, "message": message},
                }))  # fmt: skip
        lines.sort(key=lambda x: x[0])
        ok_lines = [json.dumps(b) for _, ok, b in lines if ok]
        bad_lines = [json.dumps(b) for _, ok, b in lines if not ok]
        for kind, texts in (("output", ok_lines), ("error", bad_lines)):
            if texts:
                f = add_file(s, row.tenant_id, row.user_id, "batch_output",
                             f"{batch_id}_{kind}.jsonl", ("\n".join(texts) + "\n").encode(),
                             rows=len(texts))  # fmt: skip
                setattr(row, f"{kind}_file_id", f.id)
        stamp = {"completed": "completed_at", "expired": "expired_at",
                 "cancelled": "cancelled_at", "failed": "failed_at"}[status]  # fmt: skip
        row.status, row.lease_owner, row.lease_until = status, None, None
        setattr(row, stamp, now())
        if errors is not None:
            row.errors = errors
        if reason is not None:
            row.failed += len(unanswered)
        s.execute(delete(BatchResult).where(BatchResult.batch_id == batch_id))
    return True


# ---- erasure ----------------------------------------------------------------------------------


def erase_person_batches(s: Session, user_id: str) -> dict[str, int]:
    """A person's erasure, for the Batch and Files APIs (in the erasure's transaction):
    their batches go, queued or running (a runner finds its lease gone and stops without
    writing anything), with their answers and their input, output and error files, and so
    does every other file they uploaded or a batch of theirs wrote."""
    batches = list(s.execute(
        select(Batch.id, Batch.input_file_id, Batch.output_file_id, Batch.error_file_id)
        .where(Batch.user_id == user_id)
    ))  # fmt: skip
    batch_ids = [b.id for b in batches]
    file_ids = {f for b in batches for f in b[1:] if f}
    files = StoredFile.user_id == user_id
    if file_ids:
        files = or_(files, StoredFile.id.in_(file_ids))
    counts = {"files": bulk(s, delete(StoredFile).where(files))}
    if batch_ids:
        s.execute(delete(BatchResult).where(BatchResult.batch_id.in_(batch_ids)),
                  execution_options=BULK)  # fmt: skip
    counts["batches"] = bulk(s, delete(Batch).where(Batch.id.in_(batch_ids)))
    return counts
