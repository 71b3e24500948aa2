"""Candidates on live traffic before promotion: shadow, then canary.

``shadow``: gateways answer a sampled ``share`` of the alias's chat requests a second time
with the candidate, in the background, and keep up to ``budget`` (request, live answer,
shadow answer) pairs for the judge. ``canary``: the candidate answers a sticky ``share``
of the alias's requests, and is rolled back by the gateways when its error rate or
latency regress against the incumbent's (``policy``, see
:data:`openclone.store.splits.DEFAULT_POLICY`); with a ``budget`` the incumbent also
answers that many of the canary's chat requests in the background, so a judge can roll it
back when its quality regresses (the loop's canary step does). Neither moves the alias:
promotion does.
The checks live here; the rows and the counting in :mod:`openclone.store.splits`, the
routing in :mod:`openclone.routing.splits`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openclone.errors import InvalidRequestError
from openclone.model_names import parse_model_name
from openclone.registry.versions import get_version
from openclone.store.db import Store
from openclone.store.splits import (
    DEFAULT_POLICY,
    KINDS,
    SplitInfo,
    end_split,
    find_active,
    list_splits,
    start_split,
)

__all__ = ["check_policy", "ensure_split", "list_splits", "start_canary", "start_shadow", "stop"]


def _candidate(store: Store, name: str, candidate: str) -> str:
    """``candidate`` checked: a version of ``name`` other than the one it serves now."""
    parsed = parse_model_name(candidate)
    if parsed.version is None or parsed.base != name:
        raise InvalidRequestError(
            f"the candidate must be a version of {name!r} (NAME@N), not {candidate!r}",
            param="candidate",
        )
    incumbent = get_version(store, name)  # ModelNotFound: no live traffic to split
    version = get_version(store, name, parsed.version)
    if version.status == "archived":
        raise InvalidRequestError(f"{candidate} is archived", param="candidate")
    if version.version == incumbent.version:
        raise InvalidRequestError(f"{candidate} already serves {name}", param="candidate")
    return version.pinned


def _share(share: float) -> float:
    if not 0 < share <= 1:
        raise InvalidRequestError(f"share must be in (0, 1], not {share}", param="share")
    return float(share)


def check_policy(policy: Mapping[str, Any] | None) -> dict[str, float]:
    """A canary's rollback rule, its unnamed parts from the defaults."""
    rule = dict(DEFAULT_POLICY)
    for key, value in (policy or {}).items():
        if key not in DEFAULT_POLICY:
            raise InvalidRequestError(
                f"unknown canary policy {key!r}; known: {', '.join(DEFAULT_POLICY)}", param=key
            )
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise InvalidRequestError(f"{key} must be a number >= 0, not {value!r}", param=key)
        rule[key] = float(value)
    if rule["min_requests"] < 1:
        raise InvalidRequestError("min_requests must be at least 1", param="min_requests")
    return rule


def start_shadow(
    store: Store, name: str, candidate: str, share: float, budget: int, *, actor: str = "cli"
) -> SplitInfo:
    """Shadow ``candidate`` on ``share`` of ``name``'s chat requests, up to ``budget`` pairs;
    replaces the name's active shadow, if any."""
    if budget < 1:
        raise InvalidRequestError(f"budget must be at least 1 pair, not {budget}", param="budget")
    pinned = _candidate(store, name, candidate)
    return start_split(store, name, "shadow", pinned, _share(share), budget=budget, actor=actor)


def start_canary(
    store: Store,
    name: str,
    candidate: str,
    share: float,
    policy: Mapping[str, Any] | None = None,
    *,
    judge_pairs: int = 0,
    actor: str = "cli",
) -> SplitInfo:
    """Serve ``share`` of ``name``'s requests from ``candidate`` (sticky per conversation or
    person) until it is stopped, rolled back or promoted; replaces an active canary. With
    ``judge_pairs``, gateways have the incumbent answer up to that many of the canary's chat
    requests again in the background and keep the pairs, for a judge to compare."""
    if judge_pairs < 0:
        raise InvalidRequestError("judge_pairs must be 0 or more", param="judge_pairs")
    pinned = _candidate(store, name, candidate)
    rule = check_policy(policy)
    return start_split(store, name, "canary", pinned, _share(share), budget=judge_pairs or None,
                       policy=rule, actor=actor)  # fmt: skip


def ensure_split(store: Store, kind: str, name: str, candidate: str, start: Any) -> SplitInfo:
    """The active ``kind`` split of ``name`` for ``candidate`` — a loop resumed after a crash
    continues the one it started — else ``start()``'s new one."""
    found = find_active(store, name, kind)
    if found is not None and found.candidate == candidate:
        return found
    made: SplitInfo = start()
    return made


def stop(
    store: Store, name: str, kind: str | None = None, *, actor: str = "cli"
) -> list[SplitInfo]:
    """End ``name``'s active splits (of ``kind``, or both); returns those it ended."""
    if kind is not None and kind not in KINDS:
        raise InvalidRequestError(f"kind must be one of {', '.join(KINDS)}", param="kind")
    ended = []
    for k in [kind] if kind else list(KINDS):
        split = find_active(store, name, k)
        if split is not None and end_split(store, split.id, "stopped", f"stopped by {actor}",
                                           actor=actor):  # fmt: skip
            ended.append(split)
    return ended
