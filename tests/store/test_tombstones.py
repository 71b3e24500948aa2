"""Late writes after an erasure: a shadow answer or a queued capture must not bring back
what was erased (a capture's pair, a whole tenant), while new work still goes on."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from openclone.registry.splits import start_shadow
from openclone.registry.versions import promote, register
from openclone.store import Store
from openclone.store.accounts import find_tenant, find_user, set_tenant_policy
from openclone.store.exchange import Exchange
from openclone.store.privacy import erase
from openclone.store.responses import ResponseRecord, save_response
from openclone.store.scrub import resolve_redactor
from openclone.store.splits import read_pairs, write_pair
from openclone.store.tables import Capture, ErasedCapture
from openclone.store.taint import list_taints, taint_erasure
from openclone.store.tombstones import TenantErased, UserErased, bury_captures, bury_tenant
from store.helpers import capture_ids, exchange, write

REDACT = resolve_redactor(None)


def _pair(store: Store, split_id: str, ex: Exchange) -> str:
    shadow = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Shadow."}}]}
    return write_pair(store, split_id, ex, shadow_model="bot@2", shadow_response=shadow,
                      shadow_error=None, shadow_latency_ms=5.0, redactor=REDACT)  # fmt: skip


def _shadow(store: Store) -> str:
    register(store, "bot", "model-a")
    register(store, "bot", "model-b")
    promote(store, "bot", 1)
    set_tenant_policy(store, "acme", actor="admin", consent=True)
    return start_shadow(store, "bot", "bot@2", share=1.0, budget=10).id


def test_a_pair_for_an_erased_capture_is_refused_and_erasure_removes_the_pairs_it_had(
    store: Store,
) -> None:
    split = _shadow(store)
    first, second = exchange("ana's first question"), exchange("ana's second question")
    bob = exchange("bob's question", user="bob")
    write(store, first, second, bob)
    assert _pair(store, split, first) == "stored"
    assert _pair(store, split, bob) == "stored"

    erase(store, actor="admin", tenant="acme", user="ana")

    # The pair written before the erasure went with it; the shadow answer that arrives
    # after it, for a capture of the same person, is not written.
    assert [p.capture_id for p in read_pairs(store, split)] == [bob.id]
    assert _pair(store, split, second) == "erased"
    assert [p.capture_id for p in read_pairs(store, split)] == [bob.id]
    # One capture's erasure refuses its own late pair, not its neighbours'.
    erase(store, actor="admin", capture=bob.id)
    assert _pair(store, split, bob) == "erased"
    later = exchange("carol asks", user="carol")  # shadowed before its capture is written
    assert _pair(store, split, later) == "stored"


def test_writes_begun_before_a_tenant_was_erased_do_not_create_it_again(store: Store) -> None:
    split = _shadow(store)
    begun = time.time() - 1
    queued = exchange("late capture", tenant="globex", created=begun)
    shadowed = exchange("late shadow", tenant="globex", created=begun)
    write(store, exchange("globex exists", tenant="globex", created=begun))
    erase(store, actor="admin", tenant="globex")

    writer = write(store, queued)  # a capture still in the writer's queue at the erasure
    assert writer.dropped == 1 and writer.written == 0
    assert _pair(store, split, shadowed) == "erased"
    late = ResponseRecord(
        id="resp_late", model="m", body={}, input_items=[], messages=[], created=begun
    )
    with pytest.raises(TenantErased, match="erased"):
        save_response(store, "globex", None, late)
    with store.session() as s:
        assert find_tenant(s, "globex") is None

    # A request made after the erasure is new work: the tenant is created anew.
    fresh = exchange("a new request", tenant="globex")
    write(store, fresh)
    assert fresh.id in capture_ids(store)
    with store.session() as s:
        assert find_tenant(s, "globex") is not None


def test_writes_begun_before_a_person_was_erased_do_not_create_them_again(store: Store) -> None:
    split = _shadow(store)
    begun = time.time() - 1
    write(store, exchange("ana exists", created=begun))
    erase(store, actor="admin", tenant="acme", user="ana")

    writer = write(store, exchange("late capture", created=begun))  # queued at the erasure
    assert writer.dropped == 1 and writer.written == 0
    assert _pair(store, split, exchange("late shadow", created=begun)) == "erased"
    late = ResponseRecord(
        id="resp_late", model="m", body={}, input_items=[], messages=[], created=begun
    )
    with pytest.raises(UserErased, match="erased"):
        save_response(store, "acme", "ana", late)
    with store.session() as s:
        tenant = find_tenant(s, "acme")
        assert tenant is not None and find_user(s, tenant, "ana") is None

    # A request made after the erasure is new work: the person is created anew.
    fresh = exchange("a new request")
    write(store, fresh)
    assert fresh.id in capture_ids(store)


def _overlapping(store: Store, work: Callable[[Session, str], object]) -> None:
    """Run ``work`` in two transactions at once: the second starts while the first holds
    its rows uncommitted (PostgreSQL: it waits on them), and both must succeed."""
    errors: list[BaseException] = []

    def second() -> None:
        try:
            with store.session() as s:
                work(s, "erasure-b")
        except BaseException as e:  # reported by the test's thread
            errors.append(e)

    other = threading.Thread(target=second)
    with store.session() as s:
        work(s, "erasure-a")
        s.flush()
        other.start()
        other.join(timeout=1)  # let it reach the rows we hold; it cannot finish before us
    other.join()
    assert errors == []


def test_two_erasures_at_once_both_leave_their_tombstones_and_taints(store: Store) -> None:
    write(store, exchange("one"), exchange("two"))
    register(store, "bot", "model-a", lineage={"dataset_sha256": "abc"})
    _overlapping(store, lambda s, e: bury_captures(s, select(Capture.id), e))
    _overlapping(store, lambda s, e: bury_tenant(s, "gone", e))
    _overlapping(store, lambda s, e: taint_erasure(s, e, [], ["abc"]))
    [taint] = list_taints(store)
    assert (taint.target, sorted(taint.erasures)) == ("bot@1", ["erasure-a", "erasure-b"])
    with store.session() as s:
        assert set(s.scalars(select(ErasedCapture.capture_id))) == set(capture_ids(store))
