"""Gateways sharing a store run each batch once (issue 18): a batch's lease is claimed by
exactly one of them, renewed by its holder, and taken over when it runs out — the new
holder answers only what is left, the old one can no longer record or finish. Also: a
batch finishing after its tenant or person was erased writes nothing and re-creates
nothing. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from typing import Any

from sqlalchemy import func, select, update

from openclone.store import Store
from openclone.store.batches import (
    LOST,
    claim_batch,
    create_batch,
    finish_batch,
    get_batch,
    load_work,
    pending_batch_ids,
    record_results,
    renew_lease,
    start_batch,
)
from openclone.store.files import file_content, save_file
from openclone.store.privacy import erase
from openclone.store.tables import Batch, Tenant, now
from store.helpers import ANA

URL = "/v1/embeddings"


def _batch(store: Store, lines: int = 3) -> str:
    rows = [{"custom_id": f"r{i}", "method": "POST", "url": URL, "body": {"input": f"x{i}"}}
            for i in range(lines)]  # fmt: skip
    data = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    input_file = save_file(store, "acme", "batch", "in.jsonl", data, user="ana")
    return str(create_batch(store, ANA, URL, input_file.id, "24h")["id"])


def _answer(line: int) -> tuple[int, bool, dict[str, Any], int, int]:
    return line, True, {"custom_id": f"r{line - 1}", "response": {"line": line}}, 1, 1


def test_of_two_claimers_one_wins_and_an_expired_lease_is_taken_over(store: Store) -> None:
    batch_id = _batch(store)
    t = now()
    assert claim_batch(store, batch_id, "gw-a", ttl=60, at=t)
    assert not claim_batch(store, batch_id, "gw-b", ttl=60, at=t + 1)
    assert pending_batch_ids(store, "gw-b", at=t + 1) == []  # held: not offered to b
    assert pending_batch_ids(store, "gw-a", at=t + 1) == [batch_id]
    assert renew_lease(store, batch_id, "gw-a", ttl=60, at=t + 30)
    assert not renew_lease(store, batch_id, "gw-b", ttl=60, at=t + 30)
    assert not claim_batch(store, batch_id, "gw-b", ttl=60, at=t + 80)  # renewed until t+90

    assert start_batch(store, batch_id, "gw-a") == "in_progress"
    status, _ = record_results(store, batch_id, "gw-a", [_answer(1)])
    assert status == "in_progress"

    # Gateway a dies; once its lease has run out, b takes the batch over and goes on with
    # the lines a had not answered.
    assert pending_batch_ids(store, "gw-b", at=now() + 3600) == [batch_id]
    assert claim_batch(store, batch_id, "gw-b", ttl=60, at=now() + 3600)
    work = load_work(store, batch_id, "gw-b")
    assert work is not None and [line for line, _ in work.requests] == [2, 3]
    # a comes back: its lease is gone, so it neither records nor finishes anything.
    assert record_results(store, batch_id, "gw-a", [_answer(2)]) == (LOST, 0.0)
    assert start_batch(store, batch_id, "gw-a") == LOST
    assert not finish_batch(store, batch_id, "completed", owner="gw-a")
    assert get_batch(store, "acme", batch_id)["status"] == "in_progress"

    record_results(store, batch_id, "gw-b", [_answer(2), _answer(3)])
    assert finish_batch(store, batch_id, "completed", owner="gw-b")
    done = get_batch(store, "acme", batch_id)
    assert done["status"] == "completed" and done["request_counts"]["completed"] == 3
    out = file_content(store, "acme", done["output_file_id"]).decode().splitlines()
    assert [json.loads(x)["response"]["line"] for x in out] == [1, 2, 3]
    # A finished batch is nobody's to claim.
    assert not claim_batch(store, batch_id, "gw-c", at=now() + 7200)


def _race(store: Store, batch_id: str, owners: list[str]) -> list[str]:
    """Who of ``owners``, claiming from threads of their own at once, got the lease."""
    gate = threading.Barrier(len(owners))
    won: list[str] = []

    def claim(owner: str) -> None:
        gate.wait()
        if claim_batch(store, batch_id, owner):
            won.append(owner)

    threads = [threading.Thread(target=claim, args=(o,)) for o in owners]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return won


def test_gateways_claiming_at_the_same_moment_get_one_winner(store: Store) -> None:
    batch_id = _batch(store, lines=1)
    for round_ in range(5):
        with store.session() as s:
            s.execute(update(Batch).values(lease_owner=None, lease_until=None))
        won = _race(store, batch_id, [f"gw-{round_}-{i}" for i in range(4)])
        assert len(won) == 1, won


def test_a_batch_finishing_after_its_tenant_was_erased_recreates_nothing(store: Store) -> None:
    batch_id = _batch(store)
    assert claim_batch(store, batch_id, "gw-a")
    record_results(store, batch_id, "gw-a", [_answer(1)])

    erase(store, actor="admin", tenant="acme")

    assert record_results(store, batch_id, "gw-a", [_answer(2)]) == (LOST, 0.0)
    assert not finish_batch(store, batch_id, "completed", owner="gw-a")
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Tenant)) == 0


def test_a_batch_finishing_after_its_person_was_erased_writes_no_files(store: Store) -> None:
    batch_id = _batch(store)
    assert claim_batch(store, batch_id, "gw-a")
    record_results(store, batch_id, "gw-a", [_answer(1)])

    result = erase(store, actor="admin", tenant="acme", user="ana")

    assert (result.counts["batches"], result.counts["files"]) == (1, 1)
    assert not finish_batch(store, batch_id, "completed", owner="gw-a")
    assert load_work(store, batch_id, "gw-a") is None
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Batch)) == 0


def test_a_holder_whose_lease_ran_out_records_and_finishes_nothing(store: Store) -> None:
    """The lease's own check renews it, so a lease that ran out (nobody took it over yet)
    is not quietly revived by a late write: the runner must claim it again."""
    batch_id = _batch(store)
    assert claim_batch(store, batch_id, "gw-a", ttl=60, at=now() - 120)  # ran out a minute ago
    assert start_batch(store, batch_id, "gw-a") == LOST
    assert record_results(store, batch_id, "gw-a", [_answer(1)]) == (LOST, 0.0)
    assert not finish_batch(store, batch_id, "completed", owner="gw-a")
    assert get_batch(store, "acme", batch_id)["request_counts"]["completed"] == 0

    assert claim_batch(store, batch_id, "gw-a")  # claimed again: its writes count
    assert record_results(store, batch_id, "gw-a", [_answer(1)])[0] == "validating"
    with store.session() as s:
        until = s.scalar(select(Batch.lease_until).where(Batch.id == batch_id))
        assert until is not None and until > now() + 30
