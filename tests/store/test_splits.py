"""Shadow and canary in the store (both backends): the pair budget holds across writers,
pairs are kept only with consent, redacted and erased like captures; canary counts add
up across gateways and a regressing canary is rolled back once, with its decision."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from openclone.errors import InvalidRequestError, ModelNotFound
from openclone.registry.gate import check
from openclone.registry.splits import start_canary, start_shadow, stop
from openclone.registry.versions import decisions, promote, register
from openclone.routing.splits import SplitTable, regression, sticky_fraction, takes
from openclone.store import Store
from openclone.store.accounts import set_tenant_policy, set_user_consent
from openclone.store.exchange import Exchange
from openclone.store.privacy import erase
from openclone.store.scrub import resolve_redactor
from openclone.store.splits import (
    ArmCounts,
    add_counts,
    arm_totals,
    get_split,
    read_pairs,
    write_pair,
)
from store.helpers import exchange, write

REDACT = resolve_redactor(None)


def _bot(store: Store) -> None:
    """``bot`` served by version 1, with a candidate version 2."""
    register(store, "bot", "model-a")
    register(store, "bot", "model-b")
    promote(store, "bot", 1)


def _pair(store: Store, split_id: str, ex: Exchange, answer: str = "Shadow says hi.") -> str:
    shadow = {"choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}]}
    return write_pair(store, split_id, ex, shadow_model="bot@2", shadow_response=shadow,
                      shadow_error=None, shadow_latency_ms=5.0, redactor=REDACT)  # fmt: skip


def test_a_shadow_keeps_no_more_pairs_than_its_budget_whoever_writes(store: Store) -> None:
    _bot(store)
    set_tenant_policy(store, "acme", actor="admin", consent=True)
    split = start_shadow(store, "bot", "bot@2", share=1.0, budget=3)
    outcomes: list[str] = []
    lock = threading.Lock()

    def gateway(n: int) -> None:  # several gateways' writers at once
        for i in range(n):
            result = _pair(store, split.id, exchange(f"question {i}"))
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=gateway, args=(3,)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(outcomes) == ["full"] * 6 + ["stored"] * 3
    assert len(read_pairs(store, split.id)) == 3
    found = get_split(store, split.id)
    assert found is not None and found.pairs == 3


def test_pairs_are_kept_with_consent_only_and_redacted(store: Store) -> None:
    _bot(store)
    split = start_shadow(store, "bot", "bot@2", share=1.0, budget=10)
    # The tenant's default is no: not kept, unless the request says yes.
    assert _pair(store, split.id, exchange("hello")) == "no_consent"
    assert _pair(store, split.id, exchange("hello", train=True)) == "stored"
    # A person's own "no" wins over the header.
    set_user_consent(store, "acme", "ana", False, actor="ana")
    assert _pair(store, split.id, exchange("hello", train=True)) == "no_consent"
    set_tenant_policy(store, "acme", actor="admin", consent=True)
    kept = _pair(store, split.id, exchange("mail me at ana@example.com", user="bob"),
                 answer="I wrote to ana@example.com")  # fmt: skip
    assert kept == "stored"
    (_, pair) = read_pairs(store, split.id)
    assert "ana@example.com" not in str(pair.request) + str(pair.shadow_response)
    assert "[EMAIL]" in str(pair.request) and "[EMAIL]" in str(pair.shadow_response)


def test_an_erasure_takes_the_pairs_with_the_captures(store: Store) -> None:
    _bot(store)
    set_tenant_policy(store, "acme", actor="admin", consent=True)
    split = start_shadow(store, "bot", "bot@2", share=1.0, budget=10)
    in_conv = exchange("first", conversation="c1", user="ana")
    other = exchange("second", user="bob")
    write(store, in_conv, other)
    for ex in (in_conv, other, exchange("not captured", user="ana")):
        assert _pair(store, split.id, ex) == "stored"

    result = erase(store, actor="admin", conversation="c1", tenant="acme")
    assert result.counts["shadow_pairs"] == 1
    assert len(read_pairs(store, split.id)) == 2
    erase(store, actor="admin", tenant="acme", user="ana")  # its user row's cascade, too
    assert [p.capture_id for p in read_pairs(store, split.id)] == [other.id]


def test_only_a_version_of_the_name_other_than_its_champion_can_be_tried(store: Store) -> None:
    register(store, "bot", "model-a")
    with pytest.raises(ModelNotFound):  # no champion: no live traffic to split
        start_shadow(store, "bot", "bot@1", share=0.5, budget=5)
    _bot(store)
    for candidate in ("bot", "other@2", "bot@1", "bot@9"):
        with pytest.raises((InvalidRequestError, ModelNotFound)):
            start_canary(store, "bot", candidate, share=0.5)
    with pytest.raises(InvalidRequestError, match="share"):
        start_shadow(store, "bot", "bot@2", share=1.5, budget=5)
    with pytest.raises(InvalidRequestError, match="unknown canary policy"):
        start_canary(store, "bot", "bot@2", share=0.5, policy={"max_errors": 1})
    first = start_shadow(store, "bot", "bot@2", share=0.5, budget=5)
    second = start_shadow(store, "bot", "bot@2", share=0.2, budget=5)  # replaces the first
    found = get_split(store, first.id)
    assert found is not None and found.state == "stopped"
    assert [s.id for s in stop(store, "bot")] == [second.id]


def test_canary_counts_add_up_across_gateways_and_a_regression_rolls_it_back_once(
    store: Store,
) -> None:
    _bot(store)
    split = start_canary(store, "bot", "bot@2", share=0.5, policy={"min_requests": 4})
    add_counts(store, {(split.id, "canary", 100): (2, 2, 0.0),
                       (split.id, "incumbent", 100): (5, 0, 500.0)})  # fmt: skip
    add_counts(store, {(split.id, "canary", 100): (1, 1, 0.0)})  # another gateway, same minute
    totals = arm_totals(store, [split.id])[split.id]
    assert totals["canary"] == ArmCounts(3, 3, 0.0)
    gateways = [SplitTable(), SplitTable()]
    assert [s.id for s in gateways[0]._sync(store, {})] == [split.id]  # 3 < min_requests

    gateways[0].count(split.id, "canary", error=True, seconds=0.01)
    deltas = gateways[0]._counts
    assert gateways[0]._sync(store, deltas) == []  # rolled back
    assert gateways[1]._sync(store, {}) == []  # ended for everyone, recorded once
    found = get_split(store, split.id)
    assert found is not None and found.state == "rolled_back"
    assert "error rate 100% on 4 canary requests" in found.reason
    (rolled,) = [d for d in decisions(store, "bot") if d["action"] == "canary-rollback"]
    assert rolled["version"] == 2 and rolled["evidence"]["canary"]["errors"] == 4


def test_the_rollback_rule() -> None:
    policy: dict[str, Any] = {"min_requests": 10, "max_error_increase": 0.05,
                              "max_latency_ratio": 2.0}  # fmt: skip
    healthy = {"canary": ArmCounts(20, 1, 19 * 100.0), "incumbent": ArmCounts(50, 2, 48 * 90.0)}
    assert regression(healthy, policy) is None
    assert regression({"canary": ArmCounts(9, 9, 0.0)}, policy) is None  # too few yet
    failing = {"canary": ArmCounts(10, 3, 700.0), "incumbent": ArmCounts(100, 5, 95 * 100.0)}
    assert "error rate 30%" in (regression(failing, policy) or "")
    slow = {"canary": ArmCounts(10, 0, 10 * 300.0), "incumbent": ArmCounts(10, 0, 10 * 100.0)}
    assert "mean latency 300 ms" in (regression(slow, policy) or "")


def test_a_canary_share_is_sticky_and_close_to_its_share() -> None:
    from openclone.store.splits import SplitInfo

    split = SplitInfo("s1", "bot", "canary", "bot@2", 0.25, None, 0, {}, "active", "", "t", 0, 0)
    keys = [f"acme/conversation-{i}" for i in range(4000)]
    first = [takes(split, k) for k in keys]
    assert first == [takes(split, k) for k in keys]  # the same side every time
    assert 0.22 < sum(first) / len(keys) < 0.28
    assert sticky_fraction("s1", "x") != sticky_fraction("s2", "x")  # a new canary reshuffles


def test_the_gate_weighs_live_traffic() -> None:
    even = {"candidate": "b@2", "reference": "b@1", "win_rate": 0.5, "ci_low": 0.4,
            "ci_high": 0.6, "n": 40}  # fmt: skip
    losing = {**even, "win_rate": 0.2, "ci_low": 0.1, "ci_high": 0.35}
    assert check(True, even, None, vs_live=even).ok
    refused = check(True, even, None, vs_live=losing)
    assert "live traffic" in refused.reasons[0] and refused.evidence["vs_live"]["n"] == 40
    assert not check(True, even, None, vs_live=even, min_live_win_rate=0.55).ok
    assert "no live-traffic" in check(True, even, None, min_live_win_rate=0.5).reasons[0]
    rolled = check(True, even, None, canary={"state": "rolled_back", "reason": "errors"})
    assert rolled.reasons == ["the canary was rolled back: errors"]
    # A canary still serving whose own requests were judged against the incumbent's answers:
    # refused when they put it significantly below 50%, once there are enough of them.
    judged = {"state": "active", "quality": {**losing, "n": 5}}
    assert "the canary's own requests" in check(True, even, None, canary=judged).reasons[0]
    assert check(True, even, None, canary={**judged, "quality": {**losing, "n": 4}}).ok
    assert check(True, even, None, canary={"state": "active", "quality": {**even, "n": 5}}).ok


def test_a_promotion_ends_the_shadow_and_canary_of_the_name(store: Store) -> None:
    _bot(store)
    ids = [start_shadow(store, "bot", "bot@2", share=0.5, budget=5).id,
           start_canary(store, "bot", "bot@2", share=0.5).id]  # fmt: skip
    promote(store, "bot", 2, force=True)
    for split_id in ids:
        found = get_split(store, split_id)
        assert found is not None and (found.state, found.reason) == ("finished", "bot@2 promoted")
