"""Erasure, retention and feedback, as an admin and a person would use them."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from openclone.errors import InvalidRequestError
from openclone.store import Store
from openclone.store.accounts import set_tenant_policy
from openclone.store.audit import list_audit
from openclone.store.conversations import (
    ConversationNotFound,
    create_conversation,
    get_conversation,
    list_conversations,
)
from openclone.store.derived import register_dataset
from openclone.store.export import CaptureFilter, export_captures
from openclone.store.keys import authenticate, create_key, list_keys
from openclone.store.lineage import affected_exports, affected_models, erasures_since
from openclone.store.privacy import add_feedback, apply_retention, erase
from openclone.store.responses import (
    ResponseNotFound,
    ResponseRecord,
    get_response,
    save_response,
)
from openclone.store.tables import Feedback, ModelVersion
from store.helpers import ANA, BOB, capture_ids, exchange, jsonl, write

MARKER = "ZQX-canary-7731-do-not-keep"


def _holding(files: list[Path], text: str) -> list[Path]:
    return [f for f in files if text.encode() in f.read_bytes()]


def test_erasing_a_person_leaves_no_trace_of_their_text(
    store: Store, home: Path, database_files: Callable[[], list[Path]]
) -> None:
    set_tenant_policy(store, "acme", actor="admin", consent=True)
    _, token = create_key(store, "acme", user="ana")
    ana = exchange(f"my secret plan {MARKER}", f"ok {MARKER}", conversation="c-ana")
    bob = exchange("bob's question", user="bob")
    write(store, ana, bob)
    add_feedback(store, ANA, ana.id, -1, f"comment {MARKER}")
    out = home / "exports" / "data.jsonl"
    export = export_captures(store, out)
    assert export.rows == 2 and MARKER in out.read_text()
    everything = lambda: [*database_files(), out]  # noqa: E731
    assert authenticate(store, token) is not None  # now in this store's key cache
    assert _holding(database_files(), MARKER)  # the canary is really there to be found

    result = erase(store, actor="admin", tenant="acme", user="ana")

    assert (result.kind, result.target, result.exports) == ("user", "acme/ana", [export.id])
    assert result.compacted
    assert result.counts["captures"] == 1 and result.counts["conversations"] == 1
    assert result.counts["users"] == 1 and result.counts["keys"] == 1
    assert _holding(everything(), MARKER) == []  # database, WAL, the export: all clean
    assert [r["metadata"]["capture_id"] for r in jsonl(out)] == [bob.id]  # bob's row stays
    assert capture_ids(store) == {bob.id}
    assert authenticate(store, token) is None and [k.user for k in list_keys(store)] == []
    with pytest.raises(ConversationNotFound):
        get_conversation(store, ANA, "c-ana")
    records = erasures_since(store)
    assert [(r.kind, r.target, r.captures) for r in records] == [("user", "acme/ana", 1)]
    assert MARKER not in json.dumps([r.__dict__ for r in records])
    assert MARKER not in json.dumps([e.detail for e in list_audit(store)])


def test_erased_exports_and_the_models_trained_on_them_are_listed(
    store: Store, tmp_path: Path
) -> None:
    set_tenant_policy(store, "acme", actor="admin", consent=True)
    write(store, exchange("from ana"), exchange("from bob", user="bob"))
    kept = export_captures(store, tmp_path / "a.jsonl")
    moved = export_captures(store, tmp_path / "b.jsonl")
    (tmp_path / "b.jsonl").unlink()  # a dataset copied elsewhere and deleted here
    unrelated = export_captures(
        store, tmp_path / "c.jsonl", CaptureFilter(tenant="acme", model="x")
    )
    with store.session() as s:
        s.add(ModelVersion(name="bot", version=1, target="t",
                           lineage={"dataset_sha256": kept.sha256}))  # fmt: skip
        s.add(ModelVersion(name="bot", version=2, target="t", lineage={"dataset_sha256": "0" * 64}))
    since = time.time()

    result = erase(store, actor="admin", tenant="acme", user="ana")

    assert sorted(result.exports) == sorted([kept.id, moved.id])
    assert unrelated.id not in result.exports
    assert set(result.datasets) == {kept.sha256, moved.sha256}
    listed = {x.id: x for x in affected_exports(store, since=since - 60)}
    assert set(listed) == {kept.id, moved.id}
    assert listed[kept.id].on_disk and listed[kept.id].sha256 != kept.sha256
    assert listed[kept.id].held == [kept.sha256] and not listed[moved.id].on_disk
    assert [(m.name, m.version) for m in affected_models(store)] == [("bot", 1)]
    assert affected_exports(store, since=time.time() + 60) == []


def test_erasing_a_conversation_or_a_tenant(store: Store) -> None:
    write(store, exchange("a", conversation="c1"), exchange("b", conversation="c2"))
    with pytest.raises(InvalidRequestError, match="no tenant named 'globex'"):
        erase(store, actor="admin", conversation="c1", tenant="globex")
    create_key(store, "globex")
    with pytest.raises(InvalidRequestError, match="no conversation"):
        erase(store, actor="admin", conversation="c1", tenant="globex")  # not that tenant's
    result = erase(store, actor="ana", conversation="c1")
    assert result.counts["messages"] == 2 and result.counts["captures"] == 1
    assert [c.id for c in list_conversations(store, ANA)] == ["c2"]
    erase(store, actor="admin", tenant="acme")
    assert capture_ids(store) == set()
    assert [k.tenant for k in list_keys(store)] == ["globex"]
    with pytest.raises(InvalidRequestError, match="no tenant"):
        erase(store, actor="admin", tenant="acme")
    assert [r.kind for r in erasures_since(store)] == ["tenant", "conversation"]


def test_erasure_needs_a_target_it_can_find(store: Store) -> None:
    write(store, exchange("a"))
    with pytest.raises(InvalidRequestError, match="say what to erase"):
        erase(store, actor="admin")
    with pytest.raises(InvalidRequestError, match="needs their tenant"):
        erase(store, actor="admin", user="ana")
    with pytest.raises(InvalidRequestError, match="no user 'zed'"):
        erase(store, actor="admin", tenant="acme", user="zed")
    assert erasures_since(store) == []


def test_retention_erases_old_captures_and_idle_conversations(store: Store) -> None:
    set_tenant_policy(store, "acme", actor="admin", retention_days=30)
    old_day = time.time() - 40 * 86400
    old = exchange("old", created=old_day)
    new = exchange("new")
    other = exchange("other tenant, no policy", tenant="globex", created=old_day - 400 * 86400)
    old_in_active = exchange("old question", "old answer", conversation="active", created=old_day)
    write(store, old, new, other, old_in_active)
    idle = create_conversation(store, ANA, title="idle")
    with store.session() as s:
        from openclone.store.tables import Conversation

        conv = s.get(Conversation, idle.id)
        assert conv is not None
        conv.updated = old_day

    results = apply_retention(store)

    assert [(r.kind, r.target) for r in results] == [("retention", "acme")]
    assert results[0].counts["captures"] == 2 and results[0].counts["conversations"] == 1
    assert capture_ids(store) == {new.id, other.id}
    assert [c.id for c in list_conversations(store, ANA)] == ["active"]
    kept = get_conversation(store, ANA, "active").messages  # still in use: history stays…
    assert [m["content"] for m in kept] == ["old question", "old answer"]
    assert kept[1]["capture_id"] is None  # …but the capture behind it is gone
    assert apply_retention(store) == []  # nothing left to do


def test_feedback_only_on_ones_own_answers(store: Store) -> None:
    liked, disliked = exchange("one"), exchange("two")
    write(store, liked, disliked)
    add_feedback(store, ANA, liked.id, 1)
    add_feedback(store, ANA, disliked.id, 1)
    add_feedback(store, ANA, disliked.id, -1, "wrong answer")  # the latest counts
    with pytest.raises(ConversationNotFound):
        add_feedback(store, BOB, liked.id, -1)
    with pytest.raises(InvalidRequestError, match="rating"):
        add_feedback(store, ANA, liked.id, 5)
    with store.session() as s:
        from sqlalchemy import select

        rows = {(f.capture_id, f.rating, f.comment) for f in s.scalars(select(Feedback))}
        users = set(s.scalars(select(Feedback.user_id)))
    assert rows == {(liked.id, 1, ""), (disliked.id, -1, "wrong answer")}
    assert len(users) == 1 and None not in users


def test_stored_responses_go_with_their_person_their_tenant_and_retention(store: Store) -> None:
    set_tenant_policy(store, "acme", actor="admin", retention_days=30)
    old_day = time.time() - 40 * 86400

    def kept(tenant: str, user: str | None, text: str, created: float | None = None) -> str:
        record = ResponseRecord(
            id=f"resp_{uuid.uuid4().hex}", model="m", body={"output_text": text},
            input_items=[{"type": "message", "role": "user", "content": text}],
            messages=[{"role": "user", "content": text}, {"role": "assistant", "content": "ok"}],
            created=created if created is not None else time.time(),
        )  # fmt: skip
        save_response(store, tenant, user, record)
        return record.id

    ana, bob = kept("acme", "ana", f"ana asks {MARKER}"), kept("acme", "bob", "bob asks")
    expired = kept("acme", None, "a tenant-wide key's old question", created=old_day)
    elsewhere = kept("globex", "ana", "another tenant's ana")

    [retention] = apply_retention(store)
    assert retention.counts["responses"] == 1
    with pytest.raises(ResponseNotFound):
        get_response(store, "acme", expired)

    result = erase(store, actor="admin", tenant="acme", user="ana")
    assert result.counts["responses"] == 1
    with pytest.raises(ResponseNotFound):
        get_response(store, "acme", ana)
    assert get_response(store, "acme", bob).id == bob

    assert erase(store, actor="admin", tenant="acme").counts["responses"] == 1
    assert get_response(store, "globex", elsewhere).id == elsewhere


def test_a_registered_dataset_is_found_and_rewritten_by_erasure(
    store: Store, tmp_path: Path
) -> None:
    ana, bob = exchange(f"ana asks {MARKER}"), exchange("bob asks", user="bob")
    write(store, ana, bob)
    out = tmp_path / "distilled.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": text}], "metadata": {"capture_id": cid}}
        for text, cid in ((f"ana asks {MARKER}", ana.id), ("bob asks", bob.id), ("seed", None))
    ]
    out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    first = register_dataset(store, out, actor="distill", source={"captures": "all consented"})
    assert first is not None and first.rows == 3
    again = register_dataset(store, out, actor="distill", source={})
    assert again is not None and again.id == first.id  # one record per file, kept current

    result = erase(store, actor="admin", tenant="acme", user="ana")

    assert result.exports == [first.id] and result.datasets == [first.sha256]
    assert MARKER not in out.read_text(encoding="utf-8")
    assert [r["metadata"]["capture_id"] for r in jsonl(out)] == [bob.id, None]
    [listed] = affected_exports(store)
    assert (listed.kind, listed.held, listed.on_disk) == ("distill", [first.sha256], True)
