"""Shadow and canary in the router: which of an alias's requests a candidate sees.

The active splits (:mod:`openclone.store.splits`) are read once a second, with the
registry's aliases (:func:`openclone.routing.open.refresh_registry`), into a
:class:`SplitTable`: a request costs a dict lookup, never a query. The same refresh adds
this process's canary counts to the shared windows and applies the rollback rule
(:func:`regression`) to every active canary, so a regressing canary is ended within a
second or two by whichever gateway sees it first, and every gateway stops sending it
traffic at its next refresh.

A canary's share is sticky: a conversation (``X-OpenClone-Conversation``), else a person
(the key's user or the request's ``user``), always lands on the same side, by a hash of
the split and that key; a request with neither is placed at random.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from dataclasses import asdict
from typing import Any

from openclone.store.db import Store
from openclone.store.splits import (
    DEFAULT_POLICY,
    ArmCounts,
    SplitInfo,
    active_splits,
    add_counts,
    arm_totals,
    roll_back,
)

__all__ = ["SplitTable", "regression", "sticky_fraction", "takes"]

log = logging.getLogger("openclone.router")


def sticky_fraction(split_id: str, key: str) -> float:
    """Where ``key`` falls in [0, 1) for this split: the same place every time."""
    digest = hashlib.blake2b(f"{split_id}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def takes(split: SplitInfo, key: str | None) -> bool:
    """Whether the candidate answers a request with this sticky ``key`` (None: at random)."""
    if key is None:
        return random.random() < split.share
    return sticky_fraction(split.id, key) < split.share


def regression(arms: dict[str, ArmCounts], policy: dict[str, Any]) -> str | None:
    """Why a canary must be rolled back, or None: once it has answered ``min_requests``,
    an error rate more than ``max_error_increase`` above the incumbent's, or (when both
    arms have that many answers) a mean latency over ``max_latency_ratio`` times the
    incumbent's."""
    rule = {**DEFAULT_POLICY, **policy}
    can, inc = arms.get("canary", ArmCounts()), arms.get("incumbent", ArmCounts())
    least = int(rule["min_requests"])
    if can.requests < least:
        return None
    if can.error_rate > inc.error_rate + float(rule["max_error_increase"]):
        return (
            f"error rate {can.error_rate:.0%} on {can.requests} canary requests against "
            f"{inc.error_rate:.0%} on {inc.requests} for the incumbent"
        )
    mine, theirs = can.mean_latency_ms, inc.mean_latency_ms
    slow = (
        mine is not None and theirs is not None and mine > theirs * float(rule["max_latency_ratio"])
    )
    if can.answered >= least and inc.answered >= least and slow:
        return (
            f"mean latency {mine:.0f} ms on {can.answered} canary answers against "
            f"{theirs:.0f} ms for the incumbent (limit x{rule['max_latency_ratio']})"
        )
    return None


class SplitTable:
    """The active splits by alias name, and the canary counts not yet shared."""

    def __init__(self) -> None:
        # Replaced whole on each refresh, so a request sees the old table or the new one.
        self.shadows: dict[str, SplitInfo] = {}
        self.canaries: dict[str, SplitInfo] = {}
        self._counts: dict[tuple[str, str, int], list[float]] = {}

    def count(self, split_id: str, arm: str, *, error: bool, seconds: float) -> None:
        """One canary-split request answered (or failed) on ``arm``; shared at the next
        refresh. Latency counts for answered requests only."""
        key = (split_id, arm, int(time.time() // 60))
        c = self._counts.get(key)
        if c is None:
            c = self._counts[key] = [0, 0, 0.0]
        c[0] += 1
        if error:
            c[1] += 1
        else:
            c[2] += seconds * 1000

    async def refresh(self, store: Store) -> None:
        deltas, self._counts = self._counts, {}
        try:
            splits = await asyncio.to_thread(self._sync, store, deltas)
        except BaseException:
            for key, (n, errors, latency) in deltas.items():  # keep them for the next try
                c = self._counts.setdefault(key, [0, 0, 0.0])
                c[0], c[1], c[2] = c[0] + n, c[1] + errors, c[2] + latency
            raise
        self.shadows = {s.name: s for s in splits if s.kind == "shadow"}
        self.canaries = {s.name: s for s in splits if s.kind == "canary"}

    @staticmethod
    def _sync(store: Store, deltas: dict[tuple[str, str, int], list[float]]) -> list[SplitInfo]:
        add_counts(store, {k: (int(v[0]), int(v[1]), v[2]) for k, v in deltas.items()})
        splits = active_splits(store)
        canaries = [s for s in splits if s.kind == "canary"]
        totals = arm_totals(store, [c.id for c in canaries])
        ended = set()
        for split in canaries:
            arms = totals.get(split.id, {})
            reason = regression(arms, split.policy)
            if reason is None:
                continue
            evidence = {arm: asdict(c) for arm, c in arms.items()}
            if roll_back(store, split, reason, evidence):
                log.warning("canary %s of %s rolled back: %s", split.candidate, split.name, reason)
            ended.add(split.id)
        return [s for s in splits if s.id not in ended]
