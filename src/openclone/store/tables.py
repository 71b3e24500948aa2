"""The tables. Ids are text (uuid hex, or the capture id the gateway chose) so rows can be
named in URLs, headers and erasure records alike; times are UTC epoch seconds (a float),
which sort and compare the same on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def new_id() -> str:
    return uuid.uuid4().hex


def now() -> float:
    return time.time()


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    # Opt-in to training is off unless an admin turns it on, as the closed APIs now do.
    consent_default: Mapped[bool] = mapped_column(Boolean, default=False)
    redact_mode: Mapped[str] = mapped_column(String(16), default="store")  # store|export|off
    retention_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created: Mapped[float] = mapped_column(Float, default=now)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (Index("ix_users_tenant_name", "tenant_id", "name", unique=True),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(256))
    consent: Mapped[bool | None] = mapped_column(Boolean, nullable=True)  # None: tenant's
    created: Mapped[float] = mapped_column(Float, default=now)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True
    )
    scope: Mapped[str] = mapped_column(String(8))  # admin|user
    created: Mapped[float] = mapped_column(Float, default=now)
    revoked: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Written when a gateway loads the key into its cache, so at most once per cache TTL.
    last_used: Mapped[float | None] = mapped_column(Float, nullable=True)


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conv_owner", "tenant_id", "user_id", "updated"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True
    )
    # Sealed (encrypted) titles outgrow 256 characters; SQLite never enforced the length.
    title: Mapped[str] = mapped_column(String(256).with_variant(Text(), "postgresql"), default="")
    model: Mapped[str | None] = mapped_column(String(256), nullable=True)
    system_prompt: Mapped[str] = mapped_column(Text, default="")
    temperature: Mapped[float | None] = mapped_column(Float, nullable=True)
    created: Mapped[float] = mapped_column(Float, default=now)
    updated: Mapped[float] = mapped_column(Float, default=now)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (Index("ix_msg_conv", "conversation_id", "position"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(256), nullable=True)
    capture_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created: Mapped[float] = mapped_column(Float, default=now)


class Capture(Base):
    __tablename__ = "captures"
    __table_args__ = (
        Index("ix_cap_tenant_created", "tenant_id", "created"),
        Index("ix_cap_user", "user_id"),
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True
    )
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    conversation_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    endpoint: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(256))
    replica: Mapped[str | None] = mapped_column(String(256), nullable=True)
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    status: Mapped[int] = mapped_column(Integer)
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    completion_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    latency_ms: Mapped[float] = mapped_column(Float)
    consent: Mapped[bool] = mapped_column(Boolean)
    redactions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created: Mapped[float] = mapped_column(Float, default=now, index=True)


class Feedback(Base):
    __tablename__ = "feedback"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    capture_id: Mapped[str] = mapped_column(
        ForeignKey("captures.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE", name="fk_feedback_user_id"), nullable=True
    )
    rating: Mapped[int] = mapped_column(Integer)  # +1 | -1
    comment: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[float] = mapped_column(Float, default=now)


class Erasure(Base):
    """What was erased, by whom, when — never the content."""

    __tablename__ = "erasures"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    actor: Mapped[str] = mapped_column(String(256))
    kind: Mapped[str] = mapped_column(String(16))  # user|conversation|tenant|retention
    target: Mapped[str] = mapped_column(String(256))
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    capture_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    exports: Mapped[list[Any]] = mapped_column(JSON, default=list)  # exports that held them
    # Every content hash those exports had before this erasure rewrote them: a model whose
    # lineage names one of them was trained on erased data.
    datasets: Mapped[list[Any]] = mapped_column(JSON, default=list, server_default="[]")
    created: Mapped[float] = mapped_column(Float, default=now)


class ErasedTenant(Base):
    """A tenant name an erasure removed: a late writer (a capture queued before it, a
    shadow answer, a stored response) must not create it again; an admin may
    (store/tombstones.py)."""

    __tablename__ = "erased_tenants"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    erasure_id: Mapped[str] = mapped_column(String(32))
    created: Mapped[float] = mapped_column(Float, default=now)


class ErasedCapture(Base):
    """A capture a person's, conversation's or capture's erasure removed (ids only): what
    is written after it from the capture, such as a shadow pair, is refused."""

    __tablename__ = "erased_captures"
    capture_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    erasure_id: Mapped[str] = mapped_column(String(32))


class ErasedUser(Base):
    """A person an erasure removed: a late write for them (a capture queued before it, a
    shadow answer, a stored response) must not create them again (store/tombstones.py)."""

    __tablename__ = "erased_users"
    # The tenant's erasure takes these along: its own tombstone then covers its people.
    tenant_id: Mapped[str] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(256), primary_key=True)
    erasure_id: Mapped[str] = mapped_column(String(32))
    created: Mapped[float] = mapped_column(Float, default=now)


class ErasedModel(Base):
    """A fine-tuned model name an erased tenant's job gave (``ft:...``, its run's): no
    tenant owns it, so no gateway serves it to anyone but an admin (store/fine_tuning.py)."""

    __tablename__ = "erased_models"
    name: Mapped[str] = mapped_column(String(256), primary_key=True)
    created: Mapped[float] = mapped_column(Float, default=now)


class Taint(Base):
    """A dataset or model version built from data an erasure removed, and what became of
    it: tainted, retrained (a loop run built its replacement) or archived (store/taint.py)."""

    __tablename__ = "erasure_taints"
    __table_args__ = (Index("ix_taints_kind_target", "kind", "target", unique=True),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(16))  # dataset | version
    target: Mapped[str] = mapped_column(String(256))  # an export's id, or NAME@VERSION
    name: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    path: Mapped[str | None] = mapped_column(Text, nullable=True)  # a dataset's file
    erasures: Mapped[list[Any]] = mapped_column(JSON, default=list)
    state: Mapped[str] = mapped_column(String(16), default="tainted")
    run_id: Mapped[str | None] = mapped_column(String(32), nullable=True)  # retrained by
    replaced_by: Mapped[str | None] = mapped_column(String(256), nullable=True)
    created: Mapped[float] = mapped_column(Float, default=now)
    updated: Mapped[float] = mapped_column(Float, default=now)


class Export(Base):
    __tablename__ = "exports"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))  # of the file as it is now
    hashes: Mapped[list[Any]] = mapped_column(  # every sha256 the file has had, oldest first
        JSON, default=list, server_default="[]"
    )
    rows: Mapped[int] = mapped_column(Integer)
    filters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    actor: Mapped[str] = mapped_column(String(256))
    created: Mapped[float] = mapped_column(Float, default=now)


class ExportItem(Base):
    """Lineage: which captures went into which export (kept after erasure: ids only)."""

    __tablename__ = "export_items"
    export_id: Mapped[str] = mapped_column(
        ForeignKey("exports.id", ondelete="CASCADE"), primary_key=True
    )
    capture_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class Vote(Base):
    """An arena verdict: a person's vote or a judge's."""

    __tablename__ = "votes"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    user_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    model_a: Mapped[str] = mapped_column(String(256))
    model_b: Mapped[str] = mapped_column(String(256))
    winner: Mapped[str] = mapped_column(String(16))  # a|b|tie|both_bad
    source: Mapped[str] = mapped_column(String(8), default="human")  # human|judge
    created: Mapped[float] = mapped_column(Float, default=now)


class AuditEntry(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    actor: Mapped[str] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created: Mapped[float] = mapped_column(Float, default=now, index=True)


class ModelVersion(Base):
    """An immutable registry version: what ``NAME@VERSION`` serves, and where it came from."""

    __tablename__ = "model_versions"
    __table_args__ = (Index("ix_versions_name_version", "name", "version", unique=True),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    target: Mapped[str] = mapped_column(String(256))  # a model name the router serves
    engine: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # or a spec
    lineage: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="candidate")
    created: Mapped[float] = mapped_column(Float, default=now)


class Alias(Base):
    """``NAME`` (the alias clients use) points at one version; history allows rollback."""

    __tablename__ = "aliases"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    previous: Mapped[list[Any]] = mapped_column(JSON, default=list)
    updated: Mapped[float] = mapped_column(Float, default=now)


class Decision(Base):
    """Every promotion, refusal and rollback, with its evidence."""

    __tablename__ = "decisions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16))  # promote|refuse|rollback|archive
    reason: Mapped[str] = mapped_column(Text, default="")
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    actor: Mapped[str] = mapped_column(String(256))
    created: Mapped[float] = mapped_column(Float, default=now)


class LoopRun(Base):
    """One run of a retraining loop (``[[loops]]``): where it stands and what it decided."""

    __tablename__ = "loop_runs"
    __table_args__ = (Index("ix_loop_runs_loop_number", "loop", "number", unique=True),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    loop: Mapped[str] = mapped_column(String(64))
    number: Mapped[int] = mapped_column(Integer)  # 1, 2, … per loop
    status: Mapped[str] = mapped_column(String(16))  # running|paused|failed|cancelled|finished
    action: Mapped[str | None] = mapped_column(String(16), nullable=True)  # promote|reject|skip
    reason: Mapped[str] = mapped_column(Text, default="")
    candidate: Mapped[str | None] = mapped_column(String(256), nullable=True)  # NAME@VERSION
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # as it first ran
    # The process running it, so a second runner can tell a live run from a crashed one.
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    host: Mapped[str] = mapped_column(String(256), default="")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created: Mapped[float] = mapped_column(Float, default=now)
    finished: Mapped[float | None] = mapped_column(Float, nullable=True)
    # When the run last stopped running, however it stopped: the cadence counts from here.
    ended: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Until when the running process holds it: renewed while it runs, so a run whose
    # process died anywhere (another host, a container gone) is free once this passes.
    lease_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Times a process took the run over from one that died running it: a run that keeps
    # killing its process is not taken over at once forever (loop/cadence.py).
    takeovers: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class LoopStep(Base):
    """One recorded step of a loop run; a ``done`` step is never run again."""

    __tablename__ = "loop_steps"
    run_id: Mapped[str] = mapped_column(
        ForeignKey("loop_runs.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))  # running|done|failed|skipped
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # what later steps read
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started: Mapped[float] = mapped_column(Float, default=now)
    finished: Mapped[float | None] = mapped_column(Float, nullable=True)


class LoopState(Base):
    """A loop's switches that outlive its runs (paused or not)."""

    __tablename__ = "loop_states"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    actor: Mapped[str] = mapped_column(String(256), default="")
    updated: Mapped[float] = mapped_column(Float, default=now)


class StoredResponse(Base):
    """A Responses API answer kept (``store: true``) for GET and ``previous_response_id``;
    it goes with its tenant or its person when they are erased."""

    __tablename__ = "responses"
    __table_args__ = (Index("ix_responses_tenant_created", "tenant_id", "created"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True
    )
    previous_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    model: Mapped[str] = mapped_column(String(256))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)  # the response as the client got it
    input_items: Mapped[list[Any]] = mapped_column(JSON)  # this turn's input, with item ids
    # The chat so far, this answer included, as chat messages: what a follow-up continues
    # (instructions are not carried over, as OpenAI does not carry them).
    messages: Mapped[list[Any]] = mapped_column(JSON)
    created: Mapped[float] = mapped_column(Float, default=now)


class RateLimit(Base):
    """A tenant's or a key's rate limits and quota; a column left NULL is no limit.

    ``subject`` names what the limits bind (``t:<tenant id>`` or ``k:<key id>``), so one
    row per subject is a primary key, not a unique index over a nullable column."""

    __tablename__ = "rate_limits"
    subject: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    key_id: Mapped[str | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=True
    )
    rpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_streams: Mapped[int | None] = mapped_column(Integer, nullable=True)
    monthly_tokens: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    updated: Mapped[float] = mapped_column(Float, default=now)


class RateUsage(Base):
    """What a subject used in one window (``m``: a UTC minute, ``M``: a UTC month), summed
    over every gateway: each adds its own counts with ``SET requests = requests + n``."""

    __tablename__ = "rate_usage"
    subject: Mapped[str] = mapped_column(String(40), primary_key=True)
    period: Mapped[str] = mapped_column(String(1), primary_key=True)
    start: Mapped[int] = mapped_column(Integer, primary_key=True)  # minute or month number
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)


class StoredCompletion(Base):
    """A chat completion kept for the stored-completions API (``store: true``, or imported):
    the exchange itself is its capture; this row adds the id the client was answered with and
    the client's metadata. It goes with its capture (erasure, retention)."""

    __tablename__ = "stored_completions"
    __table_args__ = (
        Index("ix_stored_completions_tenant_created", "tenant_id", "created"),
        Index("ix_stored_completions_tenant_completion", "tenant_id", "completion_id"),
    )
    capture_id: Mapped[str] = mapped_column(
        ForeignKey("captures.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    completion_id: Mapped[str] = mapped_column(String(128))  # the chat.completion's id
    # ``metadata`` is the declarative base's own attribute, hence the trailing underscore.
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created: Mapped[float] = mapped_column(Float, default=now)


class TrafficSplit(Base):
    """A candidate on live traffic for a registry name: ``shadow`` (a sampled share of
    requests is also answered by the candidate, in the background) or ``canary`` (a
    sticky share is answered by it). Gateways read the active ones every second."""

    __tablename__ = "traffic_splits"
    __table_args__ = (Index("ix_traffic_splits_name_state", "name", "state"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128))  # the alias clients call
    kind: Mapped[str] = mapped_column(String(8))  # shadow|canary
    candidate: Mapped[str] = mapped_column(String(256))  # NAME@VERSION
    share: Mapped[float] = mapped_column(Float)
    budget: Mapped[int | None] = mapped_column(Integer, nullable=True)  # shadow: most pairs
    pairs: Mapped[int] = mapped_column(Integer, default=0)  # shadow pairs stored so far
    policy: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # canary rollback rule
    # active | finished | rolled_back | stopped
    state: Mapped[str] = mapped_column(String(16), default="active")
    reason: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(256))
    created: Mapped[float] = mapped_column(Float, default=now)
    updated: Mapped[float] = mapped_column(Float, default=now)


class ShadowPair(Base):
    """One live request answered by the live model and, in the background, by the shadow
    candidate: what the loop's judge compares. Consented traffic only; redacted like a
    capture; erased with the capture it shadows, its person or its tenant."""

    __tablename__ = "shadow_pairs"
    __table_args__ = (Index("ix_shadow_pairs_split_created", "split_id", "created"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    split_id: Mapped[str] = mapped_column(ForeignKey("traffic_splits.id", ondelete="CASCADE"))
    capture_id: Mapped[str] = mapped_column(String(64), index=True)  # the live exchange's id
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True
    )
    conversation_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    live_model: Mapped[str] = mapped_column(String(256))  # NAME@VERSION that answered
    live_response: Mapped[dict[str, Any]] = mapped_column(JSON)
    live_latency_ms: Mapped[float] = mapped_column(Float)
    shadow_model: Mapped[str] = mapped_column(String(256))
    shadow_response: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    shadow_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    shadow_latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    redactions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created: Mapped[float] = mapped_column(Float, default=now)


class SplitWindow(Base):
    """A canary's counts in one UTC minute for one arm (``canary`` or ``incumbent``),
    summed over every gateway with ``SET requests = requests + n``."""

    __tablename__ = "split_windows"
    split_id: Mapped[str] = mapped_column(
        ForeignKey("traffic_splits.id", ondelete="CASCADE"), primary_key=True
    )
    arm: Mapped[str] = mapped_column(String(16), primary_key=True)
    start: Mapped[int] = mapped_column(Integer, primary_key=True)  # minute number
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[int] = mapped_column(BigInteger, default=0)  # 5xx answers
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)  # sum over answered requests


class StoredFile(Base):
    """A file of the Files API: uploaded (``fine-tune``, ``batch``) or made for the tenant
    (a batch's output, a fine-tuning job's results). The content lives in the row, so it
    goes with its tenant and is compacted with the rest of an erasure."""

    __tablename__ = "files"
    __table_args__ = (Index("ix_files_tenant_created", "tenant_id", "created"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    # Whose it is (who uploaded it, or whose batch wrote it): erasing them erases it first
    # (counted), so the foreign key only lets go.
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL", name="fk_files_user_id"),
        nullable=True,
        index=True,
    )
    purpose: Mapped[str] = mapped_column(String(32))
    filename: Mapped[str] = mapped_column(String(512))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int] = mapped_column(Integer, default=0)  # JSONL lines (0 for other files)
    content: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)  # sealed; loaded when read
    created: Mapped[float] = mapped_column(Float, default=now)
    expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class FineTuningJob(Base):
    """An OpenAI-shaped fine-tuning job: a detached ``train`` job (``run_job``) with the
    API's status, events and the ``ft:`` name it is served under once it succeeds."""

    __tablename__ = "fine_tuning_jobs"
    __table_args__ = (Index("ix_fine_tuning_jobs_tenant_created", "tenant_id", "created"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(256))  # the base, a catalog name
    training_file: Mapped[str] = mapped_column(String(64))
    validation_file: Mapped[str | None] = mapped_column(String(64), nullable=True)
    suffix: Mapped[str | None] = mapped_column(String(64), nullable=True)
    seed: Mapped[int] = mapped_column(Integer)
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    method: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)
    # validating_files | queued | running | paused | succeeded | failed | cancelled
    status: Mapped[str] = mapped_column(String(24))
    ft_name: Mapped[str] = mapped_column(String(128))  # ft:BASE:ORG:SUFFIX:ID, decided at once
    run_name: Mapped[str] = mapped_column(String(64))  # the training run's (registry) name
    run_job: Mapped[str | None] = mapped_column(String(128), nullable=True)  # jobs/<id>
    fine_tuned_model: Mapped[str | None] = mapped_column(String(128), nullable=True)
    trained_tokens: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    steps_seen: Mapped[int] = mapped_column(Integer, default=0)  # metrics events recorded
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    result_files: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # What it wrote outside the store (its data copy, job and run directories): removed
    # when its tenant is erased.
    paths: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created: Mapped[float] = mapped_column(Float, default=now)
    started: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished: Mapped[float | None] = mapped_column(Float, nullable=True)


class FineTuningEvent(Base):
    """One event of a fine-tuning job, as ``/events`` lists it (``metrics`` or ``message``)."""

    __tablename__ = "fine_tuning_events"
    __table_args__ = (Index("ix_fine_tuning_events_job", "job_id", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("fine_tuning_jobs.id", ondelete="CASCADE"))
    level: Mapped[str] = mapped_column(String(8), default="info")  # info|warn|error
    kind: Mapped[str] = mapped_column("type", String(8), default="message")  # message|metrics
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created: Mapped[float] = mapped_column(Float, default=now)


class Batch(Base):
    """A batch of the Batch API: requests of an uploaded file, answered in the server's
    background at low priority; results land in ``batch_results`` until the output and
    error files are written."""

    __tablename__ = "batches"
    __table_args__ = (
        Index("ix_batches_tenant_created", "tenant_id", "created"),
        Index("ix_batches_status", "status"),
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    caller: Mapped[dict[str, Any]] = mapped_column(JSON)  # who created it: requests run as them
    user_id: Mapped[str | None] = mapped_column(  # the person of ``caller``: erased with them
        ForeignKey("users.id", ondelete="SET NULL", name="fk_batches_user_id"),
        nullable=True,
        index=True,
    )
    # The gateway running it, until when: one gateway of those sharing the store runs a
    # batch; another takes over once the lease has run out (its runner died).
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    endpoint: Mapped[str] = mapped_column(String(32))
    input_file_id: Mapped[str] = mapped_column(String(64))
    completion_window: Mapped[str] = mapped_column(String(8))
    # validating | in_progress | finalizing | completed | failed | expired | cancelling | cancelled
    status: Mapped[str] = mapped_column(String(16))
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)
    output_file_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_file_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    total: Mapped[int] = mapped_column(Integer, default=0)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    usage: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    errors: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    created: Mapped[float] = mapped_column(Float, default=now)
    expires_at: Mapped[float] = mapped_column(Float)
    in_progress_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finalizing_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    completed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    failed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    expired_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    cancelling_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    cancelled_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class BatchResult(Base):
    """One answered request of a batch (its output or error line), kept until the batch's
    files are written, so a restarted server continues where it stopped."""

    __tablename__ = "batch_results"
    batch_id: Mapped[str] = mapped_column(
        ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True
    )
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    ok: Mapped[bool] = mapped_column(Boolean)
    body: Mapped[Any] = mapped_column(JSON)  # the output line as it is written, sealed
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)


class EncryptionKey(Base):
    """A tenant's data key, wrapped by the master key (never stored in the clear): what
    opens everything sealed for the tenant (see ``store/crypto.py``). Erasing the tenant
    deletes this row, which leaves every copy of its ciphertext unreadable."""

    __tablename__ = "encryption_keys"
    tenant_id: Mapped[str] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    master_id: Mapped[str] = mapped_column(String(128))  # which master key wrapped it
    created: Mapped[float] = mapped_column(Float, default=now)
    rotated: Mapped[float | None] = mapped_column(Float, nullable=True)  # last re-wrapped


class ReviewDataset(Base):
    """A dataset file registered for human review (``store/review.py``): its examples are
    copied into ``review_examples``, sealed for ``tenant_id`` (the captures' tenant, else
    the operator's ``default``); ``search_key`` (sealed too) keys the search fingerprints."""

    __tablename__ = "review_datasets"
    __table_args__ = (Index("ix_review_datasets_path_sha", "path", "sha256", unique=True),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(256))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))  # of the file when it was registered
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    search_key: Mapped[str] = mapped_column(Text)
    rows: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(256))
    created: Mapped[float] = mapped_column(Float, default=now)


class ReviewExample(Base):
    """One example of a dataset under review: the original row and any edited answer
    (both sealed), its state (pending|approved|rejected) and who set it last."""

    __tablename__ = "review_examples"
    __table_args__ = (Index("ix_review_examples_dataset_state", "dataset_id", "state", "row"),)
    dataset_id: Mapped[str] = mapped_column(
        ForeignKey("review_datasets.id", ondelete="CASCADE"), primary_key=True
    )
    row: Mapped[int] = mapped_column(Integer, primary_key=True)  # 0-based, blank lines skipped
    source: Mapped[str] = mapped_column(String(32))  # capture|teacher|seed|import
    capture_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    teacher: Mapped[str | None] = mapped_column(String(256), nullable=True)
    example: Mapped[str] = mapped_column(Text)  # the row as read (JSON), sealed
    answer: Mapped[str | None] = mapped_column(Text, nullable=True)  # the edit, sealed
    words: Mapped[str] = mapped_column(Text)  # keyed fingerprints of its words (search)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    reviewer: Mapped[str | None] = mapped_column(String(256), nullable=True)
    updated: Mapped[float | None] = mapped_column(Float, nullable=True)


class UpstreamModel(Base):
    """What the upstream of a proxied catalog model last said about it in its models list
    (``loop/upstream_watch.py``): listed, deprecated, gone from the list, or unknown (never
    read); its shutdown date. A failed read keeps the last good answer and notes the error."""

    __tablename__ = "upstream_models"
    model: Mapped[str] = mapped_column(String(256), primary_key=True)  # the catalog name
    upstream: Mapped[str] = mapped_column(Text)  # the base URL asked
    upstream_model: Mapped[str] = mapped_column(String(256))  # the upstream's name for it
    state: Mapped[str] = mapped_column(String(16))  # listed|deprecated|gone|unknown
    shutdown: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    checked: Mapped[float] = mapped_column(Float)  # the last attempt
    listed: Mapped[float | None] = mapped_column(Float, nullable=True)  # the last good read
    error: Mapped[str | None] = mapped_column(Text, nullable=True)  # of the last attempt
