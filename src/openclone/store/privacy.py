"""Feedback, erasure and retention.

Erasure deletes for real: the rows go, SQLite's freed space is zeroed (``secure_delete``)
and its WAL checkpointed and truncated, PostgreSQL's touched tables vacuumed (``VACUUM
FULL`` by default, see :class:`~openclone.store.db.Store`), stored Responses API answers
of the person or tenant go, and recorded export files and distilled datasets
(:mod:`openclone.store.derived`) still on disk lose the erased rows. What remains is the
erasure record — who, what kind, which capture ids, which files and dataset hashes held
them — never the content, so every dataset, model and training run built from erased data
can be listed (:mod:`openclone.store.lineage`). Erasing a tenant also deletes its data key
(crypto-shredding): what was sealed with it stays unreadable wherever a copy is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Select, delete, select, update
from sqlalchemy.orm import Session

from openclone.errors import InvalidRequestError
from openclone.files import file_sha256
from openclone.store.accounts import Principal, find_tenant, find_user
from openclone.store.audit import audit
from openclone.store.batches import erase_person_batches
from openclone.store.conversations import owned_capture
from openclone.store.db import BULK, Store, bulk
from openclone.store.derived import is_derived, rewrite_without, writer_lock
from openclone.store.fine_tuning import erase_tenant_jobs
from openclone.store.sealed import keyring, seal_comment
from openclone.store.tables import (
    ApiKey,
    Capture,
    Conversation,
    EncryptionKey,
    Erasure,
    Export,
    ExportItem,
    Feedback,
    Message,
    ReviewExample,
    ShadowPair,
    StoredCompletion,
    StoredResponse,
    Tenant,
    User,
    new_id,
    now,
)
from openclone.store.taint import taint_erasure
from openclone.store.tombstones import bury_captures, bury_tenant, bury_user

__all__ = ["ErasureResult", "add_feedback", "apply_retention", "erase", "run_retention"]

log = logging.getLogger("openclone.store")
_TOUCHED = ["captures", "messages", "conversations", "feedback", "responses", "users", "api_keys",
            "stored_completions", "encryption_keys", "shadow_pairs", "files", "batches",
            "batch_results", "fine_tuning_jobs", "fine_tuning_events",
            "review_examples"]  # fmt: skip
DAY = 86400.0


def add_feedback(
    store: Store, who: Principal, capture_id: str, rating: int, comment: str = ""
) -> None:
    """Thumbs up (+1) or down (-1) on one of the caller's own answers; the latest counts."""
    if rating not in (1, -1):
        raise InvalidRequestError("rating must be 1 or -1", param="rating")
    with store.session() as s:
        cap = owned_capture(s, who, capture_id)
        s.execute(delete(Feedback).where(Feedback.capture_id == cap.id))
        sealed = seal_comment(s, cap.tenant_id, cap.id, comment[:4000])
        s.add(Feedback(capture_id=cap.id, user_id=cap.user_id, rating=rating, comment=sealed))


@dataclass(frozen=True)
class ErasureResult:
    id: str
    kind: str  # user|conversation|capture|tenant|retention
    target: str
    counts: dict[str, int]
    exports: list[str]  # ids of exports that held erased captures (their files are rewritten)
    datasets: list[str] = field(default_factory=list)  # every hash those files had
    # False when the database could not be compacted afterwards (logged): the rows are gone
    # but their bytes may linger in free space until the next erasure or VACUUM succeeds.
    compacted: bool = True


@dataclass
class _Scope:
    """What one erasure removes, as queries (no id lists: a tenant may have millions)."""

    kind: str
    target: str
    captures: Select[str]
    conversations: Select[str] | None = None
    # Stored Responses API answers: the conversation they hold is the person's text too.
    responses: Select[str] | None = None
    user: User | None = None
    tenant: Tenant | None = None  # the whole tenant goes


def erase(
    store: Store,
    *,
    actor: str,
    tenant: str | None = None,
    user: str | None = None,
    conversation: str | None = None,
    capture: str | None = None,
) -> ErasureResult:
    """Erase a person (``tenant`` + ``user``), a conversation or one capture (in ``tenant``,
    if given) or a whole tenant: captures, messages, conversations, feedback, and for a
    person or a tenant their keys and user rows too.

    A capture goes with its feedback and the answer it put in a conversation; the turns
    before it stay (later captures of that conversation repeat them as history: erase the
    conversation to remove those)."""

    def scope(s: Session) -> _Scope:
        t = find_tenant(s, tenant) if tenant else None
        if tenant and t is None:
            raise InvalidRequestError(f"no tenant named {tenant!r}", param="tenant")
        if capture:
            cap = s.get(Capture, capture)
            if cap is None or (t is not None and cap.tenant_id != t.id):
                raise InvalidRequestError(f"no capture {capture!r}", param="capture")
            return _Scope("capture", capture, select(Capture.id).where(Capture.id == cap.id))
        if conversation:
            conv = s.get(Conversation, conversation)
            if conv is None or (t is not None and conv.tenant_id != t.id):
                raise InvalidRequestError(f"no conversation {conversation!r}", param="conversation")
            return _Scope(
                "conversation", conversation,
                select(Capture.id).where(Capture.conversation_id == conv.id),
                select(Conversation.id).where(Conversation.id == conv.id),
            )  # fmt: skip
        if user:
            if t is None:
                raise InvalidRequestError("erasing a user needs their tenant", param="tenant")
            u = find_user(s, t, user)
            if u is None:
                raise InvalidRequestError(f"no user {user!r} in tenant {tenant!r}", param="user")
            return _Scope(
                "user", f"{t.name}/{u.name}",
                select(Capture.id).where(Capture.user_id == u.id),
                select(Conversation.id).where(Conversation.user_id == u.id),
                select(StoredResponse.id).where(StoredResponse.user_id == u.id),
                user=u,
            )  # fmt: skip
        if t is not None:
            return _Scope(
                "tenant", t.name,
                select(Capture.id).where(Capture.tenant_id == t.id),
                select(Conversation.id).where(Conversation.tenant_id == t.id),
                select(StoredResponse.id).where(StoredResponse.tenant_id == t.id),
                tenant=t,
            )  # fmt: skip
        raise InvalidRequestError(
            "say what to erase: a user (with a tenant), a conversation, a capture or a tenant"
        )

    return _erase(store, actor, scope)


def apply_retention(
    store: Store, *, actor: str = "retention", at: float | None = None
) -> list[ErasureResult]:
    """Erase, per tenant with ``retention_days``, the captures and stored responses older
    than that and the conversations unused for that long, through the same path as
    :func:`erase`.

    A conversation still in use keeps its messages (they are the person's chat history,
    which they can delete themselves); the captures behind its old answers are erased.
    """
    at = now() if at is None else at
    with store.session() as s:
        tenants = list(s.execute(
            select(Tenant.name, Tenant.id, Tenant.retention_days)
            .where(Tenant.retention_days.is_not(None)).order_by(Tenant.name)
        ))  # fmt: skip
    results = []
    for name, tid, days in tenants:
        cutoff = at - (days or 0) * DAY
        caps = select(Capture.id).where(Capture.tenant_id == tid, Capture.created < cutoff)
        convs = select(Conversation.id).where(
            Conversation.tenant_id == tid, Conversation.updated < cutoff
        )
        resps = select(StoredResponse.id).where(
            StoredResponse.tenant_id == tid, StoredResponse.created < cutoff
        )
        with store.session() as s:
            due = any(s.scalar(select(q.exists())) for q in (caps, convs, resps))
        if due:
            results.append(_erase(store, actor, _Scope("retention", name, caps, convs, resps)))
    return results


def run_retention(store: Store, *, actor: str, at: float | None = None) -> list[ErasureResult]:
    """:func:`apply_retention` as one audited action (an admin's "apply it now"): the run is
    recorded even when nothing was due, each erasure as well."""
    results = apply_retention(store, actor=actor, at=at)
    with store.session() as s:
        audit(s, actor, "retention.run", erasures=[r.id for r in results],
              tenants=[r.target for r in results],
              captures=sum(r.counts.get("captures", 0) for r in results))  # fmt: skip
    return results


def _erase(store: Store, actor: str, what: _Scope | Callable[[Session], _Scope]) -> ErasureResult:
    with store.session() as s:
        scope = what if isinstance(what, _Scope) else what(s)
        # Locked (PostgreSQL): a shadow pair being written for one of them waits, or is
        # waited for, so none is left behind (store/splits.py).
        ids = list(s.scalars(scope.captures.with_for_update()))
        exports = list(
            s.scalars(
                select(Export).where(
                    Export.id.in_(
                        select(ExportItem.export_id).where(
                            ExportItem.capture_id.in_(scope.captures)
                        )
                    )
                )
            )
        )
        erasure_id = new_id()
        _bury(s, scope, erasure_id)  # before the captures go: it selects their ids
        counts = _delete(s, scope)
        datasets = sorted({h for ex in exports for h in (ex.hashes or [ex.sha256])})
        erased = set(ids)
        for ex in exports:
            _scrub_export(ex, erased)
        record = Erasure(
            id=erasure_id, actor=actor, kind=scope.kind, target=scope.target, counts=counts,
            capture_ids=ids, exports=[ex.id for ex in exports], datasets=datasets,
        )  # fmt: skip
        s.add(record)
        s.flush()
        if scope.kind != "retention":
            # What was built from it must be retrained. Not for retention: data past its
            # keep-by date was used while it was kept, and tainting on each hourly pass
            # would retrain (and pay the teacher) over and over as old captures expire.
            taint_erasure(s, record.id, exports, datasets)
        audit(s, actor, "erase", erasure=record.id, kind=scope.kind, target=scope.target,
              exports=record.exports, **counts)  # fmt: skip
    if counts.get("keys"):
        store.keys_changed()  # a deleted key must stop working at once, like a revoked one
    compacted = store.compact(_TOUCHED)
    return ErasureResult(
        record.id, scope.kind, scope.target, counts, record.exports, datasets, compacted
    )


def _bury(s: Session, scope: _Scope, erasure_id: str) -> None:
    """Tombstones, so a write already under way cannot bring the data back."""
    if scope.tenant is not None:
        bury_tenant(s, scope.tenant.name, erasure_id)
    elif scope.kind != "retention":  # retention erases what is far older than any write
        bury_captures(s, scope.captures, erasure_id)
    if scope.tenant is None and scope.user is not None:  # a queued write must not revive them
        bury_user(s, scope.user.tenant_id, scope.user.name, erasure_id)


def _delete(s: Session, scope: _Scope) -> dict[str, int]:
    caps = scope.captures
    counts: dict[str, int] = {}
    counts["feedback"] = bulk(s, delete(Feedback).where(Feedback.capture_id.in_(caps)))
    if scope.kind in ("user", "capture"):
        # A capture's answer in its conversation goes with it. A person's turns in a
        # conversation that is not theirs (a tenant-wide key that named them in `user`) go
        # with them: the conversation stays, their text does not.
        counts["turns"] = bulk(s, delete(Message).where(Message.capture_id.in_(caps)))
    else:
        # A message keeps its text when its conversation stays (retention of an active
        # one); it only forgets which capture it came from.
        s.execute(
            update(Message).where(Message.capture_id.in_(caps)).values(capture_id=None),
            execution_options=BULK,
        )
    # Stored chat completions go with their captures (the foreign key would too, uncounted).
    counts["stored_completions"] = bulk(
        s, delete(StoredCompletion).where(StoredCompletion.capture_id.in_(caps))
    )
    # Shadow pairs hold the same text (the request and its answers): they go with it.
    counts["shadow_pairs"] = bulk(s, delete(ShadowPair).where(ShadowPair.capture_id.in_(caps)))
    # A dataset under review holds a copy of the capture's text: the example goes too.
    counts["review_examples"] = bulk(
        s, delete(ReviewExample).where(ReviewExample.capture_id.in_(caps))
    )
    counts["captures"] = bulk(s, delete(Capture).where(Capture.id.in_(caps)))
    if scope.conversations is not None:
        convs = scope.conversations
        counts["messages"] = bulk(s, delete(Message).where(Message.conversation_id.in_(convs)))
        counts["conversations"] = bulk(s, delete(Conversation).where(Conversation.id.in_(convs)))
    if scope.responses is not None:
        # Before the user or tenant row, whose cascade would delete them uncounted.
        counts["responses"] = bulk(
            s, delete(StoredResponse).where(StoredResponse.id.in_(scope.responses))
        )
    if scope.user is not None:
        counts["keys"] = bulk(s, delete(ApiKey).where(ApiKey.user_id == scope.user.id))
        # Their batches (queued or running: the runner finds them gone) and files.
        counts.update(erase_person_batches(s, scope.user.id))
        s.execute(delete(Feedback).where(Feedback.user_id == scope.user.id), execution_options=BULK)
        s.delete(scope.user)
        counts["users"] = 1
    if scope.tenant is not None:
        tid = scope.tenant.id
        counts["keys"] = bulk(s, delete(ApiKey).where(ApiKey.tenant_id == tid))
        counts["users"] = bulk(s, delete(User).where(User.tenant_id == tid))
        counts.update(erase_tenant_jobs(s, tid))  # files, batches, fine-tuning jobs
        # Crypto-shredding: without its data key, no copy of the tenant's sealed text (a
        # backup's rows, an encrypted export, a replica) can be read again.
        counts["data_keys"] = bulk(s, delete(EncryptionKey).where(EncryptionKey.tenant_id == tid))
        keyring(s).forget(tid)
        s.delete(scope.tenant)
    return counts


def _scrub_export(export: Export, erased: set[str]) -> None:
    """Rewrite a recorded export file without the erased captures' rows."""
    path = Path(export.path)
    if not path.is_file():
        return  # deleted, or moved: what it held is listed through the erasure record
    derived = is_derived(export)
    if not derived and file_sha256(path) != export.sha256:
        # Something else was written there since (a later export to the same path has its
        # own record); this file is not the export we made. A derived dataset (distill)
        # grows across sessions, so its rows are matched by capture id whatever its hash.
        log.warning("export %s: %s changed since it was written; not rewritten", export.id, path)
        return
    with writer_lock(path) as free:
        if not free:
            # The run writing it drops these rows itself when it ends (their captures are
            # gone by then): see openclone.store.derived.
            log.warning("export %s: a distill run is writing %s; it drops the erased rows "
                        "when it ends", export.id, path)  # fmt: skip
            return
        export.rows = rewrite_without(path, erased, (export.filters or {}).get("source"))
    export.sha256 = file_sha256(path)
    export.hashes = [*(export.hashes or []), export.sha256]
