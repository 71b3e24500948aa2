"""The registry in the store (both backends): pinned versions, gated promotion, rollback."""

from __future__ import annotations

import pytest

from openclone.errors import InvalidRequestError, ModelNotFound
from openclone.registry.versions import (
    PromotionRefused,
    decisions,
    get_version,
    list_versions,
    promote,
    register,
    resolution_map,
    rollback,
)
from openclone.store import Store

LOSING = {
    "candidate": "b@2",
    "reference": "b@1",
    "win_rate": 0.31,
    "ci_low": 0.22,
    "ci_high": 0.41,
    "n": 80,
}
EVEN = {
    "candidate": "b@2",
    "reference": "b@1",
    "win_rate": 0.48,
    "ci_low": 0.39,
    "ci_high": 0.57,
    "n": 80,
}


def test_versions_are_immutable_and_aliases_resolve(store: Store) -> None:
    v1 = register(store, "bot", "model-a", lineage={"dataset_sha256": "abc"})
    v2 = register(store, "bot", "model-b")
    assert (v1.pinned, v2.pinned) == ("bot@1", "bot@2")
    promote(store, "bot", 1)  # the first champion needs no evidence
    aliases, _ = resolution_map(store)
    assert aliases["bot"] == ("bot@1", "model-a")
    assert aliases["bot@2"] == ("bot@2", "model-b")
    assert get_version(store, "bot").lineage == {"dataset_sha256": "abc"}
    with pytest.raises(ModelNotFound):
        get_version(store, "bot", 9)
    with pytest.raises(InvalidRequestError):
        register(store, "bad name!", "x")


def test_the_gate_refuses_a_loser_and_records_every_decision(store: Store) -> None:
    register(store, "b", "m1")
    register(store, "b", "m2")
    promote(store, "b", 1)
    with pytest.raises(PromotionRefused, match="no evaluation against the current champion"):
        promote(store, "b", 2)
    with pytest.raises(PromotionRefused, match="significantly below 50%"):
        promote(store, "b", 2, vs_champion=LOSING)
    with pytest.raises(PromotionRefused, match="teacher"):
        promote(store, "b", 2, vs_champion=EVEN, vs_teacher={"win_rate": 0.40})
    promote(store, "b", 2, vs_champion=EVEN, vs_teacher={"win_rate": 0.48})  # within 5%
    assert resolution_map(store)[0]["b"][0] == "b@2"
    assert rollback(store, "b") == 1
    assert resolution_map(store)[0]["b"][0] == "b@1"
    promote(store, "b", 2, vs_champion=LOSING, force=True)
    actions = [(d["version"], d["action"], d["forced"]) for d in decisions(store, "b")]
    assert actions == [
        (1, "promote", False), (2, "refuse", False), (2, "refuse", False), (2, "refuse", False),
        (2, "promote", False), (1, "rollback", False), (2, "promote", True),
    ]  # fmt: skip
    assert [v.status for v in list_versions(store, "b")] == ["candidate", "champion"]
