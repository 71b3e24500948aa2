"""Registry operations on the store: versions, aliases, promotion, rollback, resolution.

``NAME@N`` always serves version N of NAME (its target never changes); ``NAME`` is an
alias that serves whichever version was promoted last. The gateway reads
:func:`resolution_map` every second, so a promotion made anywhere (CLI, another gateway)
takes over new requests atomically while requests already running finish where they began.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update

from openclone.errors import InvalidRequestError, ModelNotFound
from openclone.registry.gate import GateResult, check
from openclone.store.audit import audit
from openclone.store.catalog import resolution_map
from openclone.store.db import Store
from openclone.store.tables import Alias, Decision, ModelVersion, TrafficSplit, now

__all__ = [
    "PromotionRefused",
    "VersionInfo",
    "archive",
    "decisions",
    "get_version",
    "list_versions",
    "promote",
    "register",
    "resolution_map",
    "rollback",
    "set_alias",
]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# A fine-tuned model's OpenAI-shaped name, ft:BASE:ORG:SUFFIX:ID (the suffix may be empty).
_FT_NAME = re.compile(r"ft:[A-Za-z0-9._-]+:[A-Za-z0-9._-]+:[A-Za-z0-9._-]*:[A-Za-z0-9]+")


class PromotionRefused(InvalidRequestError):
    def __init__(self, result: GateResult) -> None:
        super().__init__("promotion refused: " + "; ".join(result.reasons))
        self.result = result


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: int
    target: str
    engine: dict[str, Any] | None
    lineage: dict[str, Any]
    metrics: dict[str, Any]
    status: str
    created: float
    aliased: bool = False

    @property
    def pinned(self) -> str:
        return f"{self.name}@{self.version}"


def _info(v: ModelVersion, aliased: bool = False) -> VersionInfo:
    return VersionInfo(
        v.name, v.version, v.target, v.engine, v.lineage, v.metrics, v.status, v.created, aliased
    )


def register(
    store: Store,
    name: str,
    target: str | None = None,
    *,
    engine: dict[str, Any] | None = None,
    lineage: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    actor: str = "cli",
) -> VersionInfo:
    """A new immutable version of ``name`` serving ``target`` (a model the router serves)
    or, with ``engine`` ({"engine", "params"}), a model of its own such as a GGUF file."""
    if not (_NAME.fullmatch(name) or (len(name) <= 128 and _FT_NAME.fullmatch(name))):
        raise InvalidRequestError(f"bad registry name {name!r} (letters, digits, . _ -)")
    if (target is None) == (engine is None):
        raise InvalidRequestError("a version serves either a target model or an engine spec")
    with store.session() as s:
        last = s.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.name == name))
        v = ModelVersion(
            name=name,
            version=(last or 0) + 1,
            target=target or f"{name}@{(last or 0) + 1}",
            engine=engine,
            lineage=lineage or {},
            metrics=metrics or {},
        )
        s.add(v)
        s.flush()
        audit(s, actor, "registry.register", model=name, version=v.version, target=v.target)
        return _info(v)


def _version(s: Any, name: str, version: int) -> ModelVersion:
    v = s.scalar(
        select(ModelVersion).where(ModelVersion.name == name, ModelVersion.version == version)
    )
    if v is None:
        raise ModelNotFound(f"no version {version} of {name!r} in the registry")
    return v


def get_version(store: Store, name: str, version: int | None = None) -> VersionInfo:
    """A version; without a number, the one the alias points at."""
    with store.session() as s:
        if version is None:
            alias = s.get(Alias, name)
            if alias is None:
                raise ModelNotFound(f"{name!r} has no promoted version")
            version = alias.version
        return _info(_version(s, name, version), aliased=True)


def list_versions(store: Store, name: str | None = None) -> list[VersionInfo]:
    with store.session() as s:
        q = select(ModelVersion).order_by(ModelVersion.name, ModelVersion.version)
        if name:
            q = q.where(ModelVersion.name == name)
        aliases = {a.name: a.version for a in s.scalars(select(Alias))}
        return [_info(v, aliases.get(v.name) == v.version) for v in s.scalars(q)]


def set_alias(store: Store, name: str, version: int, *, actor: str = "cli") -> None:
    """Point the alias without the gate (``promote`` is the gated way)."""
    with store.session() as s:
        _version(s, name, version)
        _point(s, name, version)
        audit(s, actor, "registry.alias", model=name, version=version)


def _point(s: Any, name: str, version: int) -> int | None:
    alias = s.get(Alias, name)
    if alias is None:
        s.add(Alias(name=name, version=version, previous=[]))
        return None
    old = int(alias.version)
    if old != version:
        alias.previous = [*alias.previous, old][-50:]
        alias.version = version
        alias.updated = now()
    return old


def promote(
    store: Store,
    name: str,
    version: int,
    *,
    vs_champion: dict[str, Any] | None = None,
    vs_teacher: dict[str, Any] | None = None,
    teacher_margin: float = 0.05,
    force: bool = False,
    actor: str = "cli",
    vs_live: dict[str, Any] | None = None,
    min_live_win_rate: float | None = None,
    canary: dict[str, Any] | None = None,
) -> GateResult:
    """Make ``name@version`` the champion if the gate agrees (or ``force``); recorded either way."""
    with store.session() as s:
        v = _version(s, name, version)
        if v.status == "archived" and not force:
            raise InvalidRequestError(f"{name}@{version} is archived")
        alias = s.get(Alias, name)
        result = check(
            alias is not None and alias.version != version, vs_champion, vs_teacher, teacher_margin,
            vs_live=vs_live, min_live_win_rate=min_live_win_rate, canary=canary,
        )  # fmt: skip
        if not result.ok and not force:
            s.add(Decision(name=name, version=version, action="refuse", reason="; ".join(result.reasons),
                           evidence=result.evidence, actor=actor))  # fmt: skip
            audit(s, actor, "registry.refuse", model=name, version=version)
        else:
            old = _point(s, name, version)
            if old is not None and old != version:
                _version(s, name, old).status = "candidate"
            v.status = "champion"
            # A shadow or canary measured against the champion that just changed ends here.
            s.execute(
                update(TrafficSplit)
                .where(TrafficSplit.name == name, TrafficSplit.state == "active")
                .values(state="finished", reason=f"{name}@{version} promoted", updated=now())
            )
            s.add(Decision(name=name, version=version, action="promote", reason="; ".join(result.reasons),
                           evidence=result.evidence, forced=force and not result.ok, actor=actor))  # fmt: skip
            audit(s, actor, "registry.promote", model=name, version=version, forced=force)
    if not result.ok and not force:
        raise PromotionRefused(result)
    return result


def rollback(store: Store, name: str, *, actor: str = "cli") -> int:
    """Point the alias back at the version it pointed at before; returns that version."""
    with store.session() as s:
        alias = s.get(Alias, name)
        if alias is None or not alias.previous:
            raise InvalidRequestError(f"{name!r} has no earlier version to roll back to")
        current, back = int(alias.version), int(alias.previous[-1])
        alias.previous = alias.previous[:-1]
        alias.version = back
        alias.updated = now()
        _version(s, name, current).status = "candidate"
        _version(s, name, back).status = "champion"
        s.add(
            Decision(
                name=name, version=back, action="rollback", reason=f"from {current}", actor=actor
            )
        )
        audit(s, actor, "registry.rollback", model=name, version=back, previous=current)
        return back


def archive(store: Store, name: str, version: int, *, actor: str = "cli") -> None:
    with store.session() as s:
        alias = s.get(Alias, name)
        if alias is not None and alias.version == version:
            raise InvalidRequestError(f"{name}@{version} is the champion; promote another first")
        _version(s, name, version).status = "archived"
        s.add(Decision(name=name, version=version, action="archive", actor=actor))
        audit(s, actor, "registry.archive", model=name, version=version)


def retire(store: Store, name: str, version: int, *, actor: str, reason: str) -> None:
    """Archive ``name@version`` even while its name points at it (the name then serves
    nothing): for a version that must stop answering, such as one trained on erased data."""
    with store.session() as s:
        alias = s.get(Alias, name)
        if alias is not None and alias.version == version:
            s.delete(alias)
        _version(s, name, version).status = "archived"
        s.add(Decision(name=name, version=version, action="archive", reason=reason, actor=actor))
        audit(s, actor, "registry.retire", model=name, version=version, reason=reason)


def decisions(store: Store, name: str) -> list[dict[str, Any]]:
    with store.session() as s:
        rows = s.scalars(select(Decision).where(Decision.name == name).order_by(Decision.id))
        return [
            {"version": d.version, "action": d.action, "reason": d.reason, "forced": d.forced,
             "evidence": d.evidence, "actor": d.actor, "created": d.created}
            for d in rows
        ]  # fmt: skip
