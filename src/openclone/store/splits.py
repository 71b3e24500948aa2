"""Live-traffic splits in the store: shadow and canary candidates, shadow pairs, canary counts.

A split names a registry alias and a candidate version. A **shadow** split has gateways
answer a sampled share of the alias's chat requests a second time with the candidate, in
the background, and store each (request, live answer, shadow answer) as a pair, up to its
``budget``: the budget is one atomic ``UPDATE ... SET pairs = pairs + 1 WHERE pairs <
budget``, so gateways sharing a database never store more. A **canary** split has gateways
answer a sticky share of the alias's requests with the candidate; each gateway adds what
it counted (requests, 5xx errors, latency) per arm and UTC minute to ``split_windows``,
and the first gateway to see a regression ends the split as ``rolled_back``. A canary with
a ``budget`` keeps pairs too, the other way round: the candidate's answer is the live one
and the incumbent's the second, for a loop's judge to compare (and roll back on).

Gateways read the active splits once a second (:func:`active_splits`), never per request.
Pairs hold captured text: only consented exchanges are stored (the capture's own rule,
:func:`~openclone.store.accounts.effective_consent`), redacted by the tenant's policy, and
an erasure deletes them with the captures they shadow, their person or their tenant.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from openclone.model_names import parse_model_name
from openclone.store.accounts import effective_consent, ensure_tenant, ensure_user
from openclone.store.audit import audit
from openclone.store.db import Store
from openclone.store.exchange import Exchange
from openclone.store.scrub import RedactorLike, clean_json, redact_exchange
from openclone.store.sealed import open_pair, seal_pair
from openclone.store.tables import (
    Capture,
    Decision,
    ShadowPair,
    SplitWindow,
    TrafficSplit,
    new_id,
    now,
)
from openclone.store.tombstones import ErasedTarget, capture_erased
from openclone.store.upsert import add_to_row

__all__ = [
    "DEFAULT_POLICY",
    "KINDS",
    "ArmCounts",
    "PairInfo",
    "SplitInfo",
    "active_splits",
    "add_counts",
    "arm_totals",
    "end_split",
    "find_active",
    "get_split",
    "list_splits",
    "read_pairs",
    "roll_back",
    "start_split",
    "write_pair",
]

KINDS = ("shadow", "canary")
# A canary is rolled back once both arms have answered ``min_requests`` and its error rate
# is more than ``max_error_increase`` above the incumbent's, or its mean latency more than
# ``max_latency_ratio`` times the incumbent's.
DEFAULT_POLICY: dict[str, float] = {
    "min_requests": 10,
    "max_error_increase": 0.05,
    "max_latency_ratio": 2.0,
}


@dataclass(frozen=True)
class SplitInfo:
    id: str
    name: str
    kind: str
    candidate: str
    share: float
    budget: int | None
    pairs: int
    policy: dict[str, Any]
    state: str
    reason: str
    actor: str
    created: float
    updated: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PairInfo:
    id: str
    capture_id: str
    request: dict[str, Any]
    live_model: str
    live_response: dict[str, Any]
    live_latency_ms: float
    shadow_model: str
    shadow_response: dict[str, Any] | None
    shadow_error: str | None
    shadow_latency_ms: float | None
    created: float


@dataclass(frozen=True)
class ArmCounts:
    requests: int = 0
    errors: int = 0
    latency_ms: float = 0.0  # summed over the answered (non-error) requests

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def answered(self) -> int:
        return self.requests - self.errors

    @property
    def mean_latency_ms(self) -> float | None:
        return self.latency_ms / self.answered if self.answered else None


def _info(r: TrafficSplit) -> SplitInfo:
    return SplitInfo(r.id, r.name, r.kind, r.candidate, r.share, r.budget, r.pairs,
                     dict(r.policy or {}), r.state, r.reason, r.actor, r.created,
                     r.updated)  # fmt: skip


def start_split(
    store: Store,
    name: str,
    kind: str,
    candidate: str,
    share: float,
    *,
    budget: int | None = None,
    policy: Mapping[str, Any] | None = None,
    actor: str = "cli",
) -> SplitInfo:
    """A new active split; an active split of the same name and kind is stopped first (a
    name has at most one shadow and one canary at a time). Audited. Checking that the
    candidate is a version of ``name`` is the registry's job."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    with store.session() as s:
        for old in s.scalars(_active(name, kind)):
            old.state, old.reason, old.updated = "stopped", f"replaced by {candidate}", now()
        row = TrafficSplit(name=name, kind=kind, candidate=candidate, share=share,
                           budget=budget, pairs=0, state="active", reason="",
                           policy={**DEFAULT_POLICY, **(policy or {})} if kind == "canary" else {},
                           actor=actor, created=now(), updated=now())  # fmt: skip
        s.add(row)
        s.flush()
        audit(s, actor, f"registry.{kind}", model=name, candidate=candidate, share=share,
              budget=budget, split=row.id)  # fmt: skip
        return _info(row)


def _active(name: str, kind: str | None = None) -> Any:
    q = select(TrafficSplit).where(TrafficSplit.name == name, TrafficSplit.state == "active")
    return q.where(TrafficSplit.kind == kind) if kind else q


def find_active(store: Store, name: str, kind: str) -> SplitInfo | None:
    with store.session() as s:
        row = s.scalar(_active(name, kind))
        return _info(row) if row is not None else None


def get_split(store: Store, split_id: str) -> SplitInfo | None:
    with store.session() as s:
        row = s.get(TrafficSplit, split_id)
        return _info(row) if row is not None else None


def active_splits(store: Store) -> list[SplitInfo]:
    """Every active split: what a gateway reads once a second."""
    with store.session() as s:
        return [
            _info(r) for r in s.scalars(select(TrafficSplit).where(TrafficSplit.state == "active"))
        ]


def list_splits(store: Store, name: str | None = None, limit: int = 50) -> list[SplitInfo]:
    """Newest first."""
    with store.session() as s:
        q = select(TrafficSplit).order_by(TrafficSplit.created.desc()).limit(limit)
        if name:
            q = q.where(TrafficSplit.name == name)
        return [_info(r) for r in s.scalars(q)]


def end_split(
    store: Store, split_id: str, state: str = "finished", reason: str = "", *, actor: str = "cli"
) -> bool:
    """End an active split (``finished`` or ``stopped``); False when it had ended already."""
    with store.session() as s:
        done = s.execute(
            update(TrafficSplit)
            .where(TrafficSplit.id == split_id, TrafficSplit.state == "active")
            .values(state=state, reason=reason, updated=now())
        ).rowcount  # type: ignore[attr-defined]
        if done:
            audit(s, actor, "registry.split_end", split=split_id, state=state, reason=reason)
        return bool(done)


def roll_back(
    store: Store,
    split: SplitInfo,
    reason: str,
    evidence: dict[str, Any],
    *,
    actor: str = "gateway",
) -> bool:
    """End a canary as ``rolled_back`` and record the decision; only the first of several
    gateways (or a loop judging the canary's answers) that see a regression records it
    (False for the others)."""
    with store.session() as s:
        done = s.execute(
            update(TrafficSplit)
            .where(TrafficSplit.id == split.id, TrafficSplit.state == "active")
            .values(state="rolled_back", reason=reason, updated=now())
        ).rowcount  # type: ignore[attr-defined]
        if not done:
            return False
        version = parse_model_name(split.candidate).version or 0
        s.add(Decision(name=split.name, version=version, action="canary-rollback",
                       reason=reason, evidence=evidence, actor=actor))  # fmt: skip
        audit(s, actor, "registry.canary_rollback", model=split.name,
              candidate=split.candidate, split=split.id, reason=reason)  # fmt: skip
        return True


# ---- shadow pairs ----------------------------------------------------------------------


def write_pair(
    store: Store,
    split_id: str,
    live: Exchange,
    *,
    shadow_model: str,
    shadow_response: dict[str, Any] | None,
    shadow_error: str | None,
    shadow_latency_ms: float | None,
    redactor: RedactorLike,
) -> str:
    """Store one pair if its exchange has training consent and the split's budget has
    room: ``stored``, ``no_consent``, ``full`` (budget spent, or the split ended) or
    ``erased`` (its capture or tenant was erased meanwhile)."""
    try:
        return _write_pair(store, split_id, live, shadow_model, shadow_response, shadow_error,
                           shadow_latency_ms, redactor)  # fmt: skip
    except IntegrityError:  # its tenant or person was created by another writer meanwhile
        return _write_pair(store, split_id, live, shadow_model, shadow_response, shadow_error,
                           shadow_latency_ms, redactor)  # fmt: skip


def _write_pair(
    store: Store,
    split_id: str,
    live: Exchange,
    shadow_model: str,
    shadow_response: dict[str, Any] | None,
    shadow_error: str | None,
    shadow_latency_ms: float | None,
    redactor: RedactorLike,
) -> str:
    with store.session() as s:
        # Its capture may have been erased while the shadow answered: the pair holds the
        # same text, so it is not written (checked in this transaction; see tombstones).
        # The capture's row is share-locked first (PostgreSQL): an erasure locks its
        # captures before it deletes their pairs, so one of the two waits for the other.
        s.execute(select(Capture.id).where(Capture.id == live.id).with_for_update(read=True))
        if capture_erased(s, live.id):
            return "erased"
        try:
            tenant = ensure_tenant(s, live.tenant or "default", started=live.created)
            user = None
            if live.user and live.user.strip():
                user = ensure_user(s, tenant, live.user, started=live.created)
        except ErasedTarget:
            return "erased"
        if not effective_consent(tenant, user, live.train):
            return "no_consent"
        room = s.execute(
            update(TrafficSplit)
            .where(
                TrafficSplit.id == split_id,
                TrafficSplit.state == "active",
                TrafficSplit.pairs < TrafficSplit.budget,
            )
            .values(pairs=TrafficSplit.pairs + 1)
        ).rowcount  # type: ignore[attr-defined]
        if not room:
            return "full"
        request, answer = clean_json(live.request), clean_json(live.response) or {}
        other = clean_json(shadow_response)
        counts: dict[str, int] = {}
        if tenant.redact_mode == "store":
            request, answer, counts = redact_exchange(request, answer, redactor)
            if other is not None:
                _, other, more = redact_exchange({}, other, redactor)
                for kind, n in more.items():
                    counts[kind] = counts.get(kind, 0) + n
        pair_id = new_id()  # sealed text is bound to its row: the id is needed first
        request, answer, other = seal_pair(s, tenant.id, pair_id, request, answer or {}, other)
        s.add(ShadowPair(id=pair_id, split_id=split_id, capture_id=live.id, tenant_id=tenant.id,
                         user_id=user.id if user else None,
                         conversation_id=live.conversation[:64] if live.conversation else None,
                         request=request, live_model=live.model[:256], live_response=answer,
                         live_latency_ms=live.latency_ms, shadow_model=shadow_model[:256],
                         shadow_response=other, shadow_error=shadow_error,
                         shadow_latency_ms=shadow_latency_ms, redactions=counts,
                         created=now()))  # fmt: skip
        return "stored"


def read_pairs(store: Store, split_id: str) -> list[PairInfo]:
    """The split's pairs, oldest first."""
    with store.session() as s:
        rows = s.scalars(
            select(ShadowPair).where(ShadowPair.split_id == split_id).order_by(ShadowPair.created)
        )
        pairs = []
        for p in rows:
            request, live, shadow = open_pair(s, p)  # sealed at rest when the store encrypts
            pairs.append(
                PairInfo(
                    p.id,
                    p.capture_id,
                    request,
                    p.live_model,
                    live,
                    p.live_latency_ms,
                    p.shadow_model,
                    shadow,
                    p.shadow_error,
                    p.shadow_latency_ms,
                    p.created,
                )
            )
        return pairs


# ---- canary counts ---------------------------------------------------------------------

CountKey = tuple[str, str, int]  # (split id, arm, minute)


def add_counts(store: Store, deltas: Mapping[CountKey, tuple[int, int, float]]) -> None:
    """Add one gateway's counts (requests, errors, latency ms) to the shared windows;
    atomic against every other gateway. Blocking: call it from a thread."""
    if not deltas:
        return
    with store.session() as s:
        for (split_id, arm, start), (requests, errors, latency) in deltas.items():
            _add(s, split_id, arm, start, requests, errors, latency)


def _add(
    s: Session, split_id: str, arm: str, start: int, requests: int, errors: int, latency: float
) -> None:
    key = {"split_id": split_id, "arm": arm, "start": start}
    add_to_row(s, SplitWindow, key, {"requests": requests, "errors": errors, "latency_ms": latency})


def arm_totals(store: Store, split_ids: list[str]) -> dict[str, dict[str, ArmCounts]]:
    """Each split's counts per arm, summed over every window and gateway."""
    if not split_ids:
        return {}
    with store.session() as s:
        return _totals(s, split_ids)


def _totals(s: Session, split_ids: list[str]) -> dict[str, dict[str, ArmCounts]]:
    out: dict[str, dict[str, ArmCounts]] = {i: {} for i in split_ids}
    q = select(SplitWindow).where(SplitWindow.split_id.in_(split_ids))
    for w in s.scalars(q):
        have = out[w.split_id].get(w.arm, ArmCounts())
        out[w.split_id][w.arm] = ArmCounts(have.requests + int(w.requests),
                                           have.errors + int(w.errors),
                                           have.latency_ms + float(w.latency_ms))  # fmt: skip
    return out
