"""The admin API's request and response bodies (``/api/admin``, :mod:`.routes_admin`).

Lists have OpenAI's shape (``object: "list"``, ``data``, ``has_more``) and page with
``offset`` and ``limit``; the audit log, which grows while it is read, pages with ``after``
(the ``last_id`` of the page before). Nothing here carries captured text or a key's secret,
except :class:`NewKeyOut`, the one answer that shows a new key, once.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from openclone.store.accounts import TENANT_NAME_MAX, USER_NAME_MAX, TenantInfo
from openclone.store.admin import TenantDetail, UserInfo
from openclone.store.keys import KeyInfo
from openclone.store.lineage import ErasureRecord
from openclone.store.privacy import ErasureResult
from openclone.store.tables import AuditEntry

__all__ = [
    "AuditListing",
    "AuditOut",
    "Confirm",
    "ErasureBody",
    "ErasureListing",
    "ErasureOut",
    "ErasureRecordOut",
    "KeyOut",
    "KeyPatch",
    "Listing",
    "NewKey",
    "NewKeyOut",
    "NewTenant",
    "RetentionOut",
    "RetentionRun",
    "TenantDetailOut",
    "TenantOut",
    "TenantPatch",
    "UserOut",
]

T = TypeVar("T")
RedactMode = Literal["store", "export", "off"]
_DAYS = Field(default=None, ge=1, le=100_000)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field must not pass unnoticed


class Listing(BaseModel, Generic[T]):
    object: Literal["list"] = "list"
    data: list[T]
    has_more: bool


# ---- tenants ---------------------------------------------------------------------------


class TenantOut(BaseModel):
    name: str
    consent_default: bool
    redact_mode: str
    retention_days: int | None
    users: int
    keys: int  # live keys
    created: float

    @classmethod
    def of(cls, t: TenantInfo) -> TenantOut:
        return cls(**asdict(t))


class TenantDetailOut(BaseModel):
    name: str
    consent_default: bool
    redact_mode: str
    retention_days: int | None
    created: float
    users: int
    keys: int
    revoked_keys: int
    captures: int
    conversations: int
    responses: int
    limits: dict[str, int | None]
    tokens_this_month: int

    @classmethod
    def of(cls, t: TenantDetail) -> TenantDetailOut:
        return cls(**{**asdict(t), "limits": t.limits.as_dict()})


class NewTenant(_Body):
    name: str = Field(min_length=1, max_length=TENANT_NAME_MAX)
    consent_default: bool = False
    redact_mode: RedactMode = "store"
    retention_days: int | None = _DAYS


class TenantPatch(_Body):
    """What is given changes; ``retention_days: null`` keeps captures forever."""

    consent_default: bool | None = None
    redact_mode: RedactMode | None = None
    retention_days: int | None = _DAYS


class Confirm(_Body):
    confirm: str = Field(description="repeat what is erased (the tenant's or person's name)")


class UserOut(BaseModel):
    name: str
    consent: bool | None  # null: the tenant's default
    keys: int
    captures: int
    conversations: int
    created: float

    @classmethod
    def of(cls, u: UserInfo) -> UserOut:
        return cls(**asdict(u))


# ---- keys ------------------------------------------------------------------------------


class KeyOut(BaseModel):
    id: str
    prefix: str
    tenant: str
    user: str | None
    scope: str
    created: float
    revoked: float | None
    last_used: float | None

    @classmethod
    def of(cls, k: KeyInfo) -> KeyOut:
        return cls(**asdict(k))


class NewKey(_Body):
    user: str | None = Field(default=None, min_length=1, max_length=USER_NAME_MAX)
    admin: bool = False


class NewKeyOut(BaseModel):
    key: KeyOut
    secret: str = Field(description="the key itself: shown this once, never stored")


class KeyPatch(_Body):
    admin: bool


# ---- erasure and retention -------------------------------------------------------------


class ErasureBody(_Body):
    """One of: ``tenant`` + ``user`` (a person), ``conversation`` or ``capture`` (in
    ``tenant`` when given), or ``tenant`` alone. ``confirm`` repeats the most specific of
    them (the capture id, conversation id, person's name or tenant's name)."""

    tenant: str | None = None
    user: str | None = None
    conversation: str | None = None
    capture: str | None = None
    confirm: str


class ErasureOut(BaseModel):
    id: str
    kind: str
    target: str
    counts: dict[str, int]
    exports: list[str]
    datasets: list[str]
    compacted: bool

    @classmethod
    def of(cls, r: ErasureResult) -> ErasureOut:
        return cls(**asdict(r))


class ErasureRecordOut(BaseModel):
    id: str
    actor: str
    kind: str
    target: str
    counts: dict[str, int]
    captures: int
    exports: list[str]
    datasets: list[str]
    created: float

    @classmethod
    def of(cls, e: ErasureRecord) -> ErasureRecordOut:
        return cls(**asdict(e))


class ErasureListing(Listing[ErasureRecordOut]):
    """Erasures, and what their data had become (``openclone audit erasures``): export
    files and distilled datasets that held it, and the models and runs trained on those."""

    affected_exports: list[dict[str, Any]] = Field(default_factory=list)
    affected_models: list[dict[str, Any]] = Field(default_factory=list)
    affected_runs: list[dict[str, Any]] = Field(default_factory=list)
    # Datasets and model versions built from erased data: tainted, retrained or archived.
    taints: list[dict[str, Any]] = Field(default_factory=list)


class RetentionOut(BaseModel):
    interval: float = Field(description="seconds between scheduled runs; 0: off")
    last_run: float | None
    next_run: float | None
    last_error: str | None
    last_erasures: list[str]
    tenants: dict[str, int] = Field(description="tenant: retention days, where one is set")


class RetentionRun(BaseModel):
    data: list[ErasureOut]


# ---- audit -----------------------------------------------------------------------------


class AuditOut(BaseModel):
    id: int
    created: float
    actor: str
    action: str
    detail: dict[str, Any]

    @classmethod
    def of(cls, e: AuditEntry) -> AuditOut:
        return cls(id=e.id, created=e.created, actor=e.actor, action=e.action, detail=e.detail)


class AuditListing(Listing[AuditOut]):
    last_id: int | None = Field(description="pass as `after` for the next page")
