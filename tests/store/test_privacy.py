"""Erasure, retention, export and feedback, as an admin and a person would use them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from openclone.errors import InvalidRequestError
from openclone.store import Store
from openclone.store.accounts import Principal, set_tenant_policy
from openclone.store.conversations import ConversationNotFound, list_conversations
from openclone.store.export import CaptureFilter, export_captures, iter_captured_prompts
from openclone.store.privacy import add_feedback, apply_retention, erase, erasures
from openclone.store.tables import Capture, Feedback
from openclone.store.writer import CaptureWriter
from store.helpers import exchange

ANA = Principal("acme", "ana", None, "user")
BOB = Principal("acme", "bob", None, "user")


def _write(store: Store, *exchanges: object) -> None:
    writer = CaptureWriter(store)
    for ex in exchanges:
        writer.submit(ex)  # type: ignore[arg-type]
    writer.close()


def _rows(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_erasing_a_person_leaves_no_trace_of_their_text(store: Store, tmp_path: Path) -> None:
    marker = "ZQX-unique-marker-7731"
    set_tenant_policy(store, "acme", actor="admin", consent=True)
    _write(
        store,
        exchange(f"my secret plan {marker}", f"ok {marker}", conversation="c-ana"),
        exchange("bob's question", user="bob"),
    )
    out = tmp_path / "data.jsonl"
    assert export_captures(store, out).rows == 2
    result = erase(store, actor="admin", tenant="acme", user="ana")
    assert result.counts["captures"] == 1 and result.counts["conversations"] == 1
    assert marker not in out.read_text()  # the recorded export lost the row…
    assert len(_rows(out)) == 1  # …and kept bob's
    assert result.exports  # the erasure lists the dataset built from the data
    with pytest.raises(ConversationNotFound):
        from openclone.store.conversations import get_conversation

        get_conversation(store, ANA, "c-ana")
    for f in store.sqlite_files:
        assert marker.encode() not in f.read_bytes(), f
    assert erasures(store)[0]["kind"] == "user"
    assert marker not in json.dumps(erasures(store))


def test_erasing_a_conversation_or_a_tenant(store: Store) -> None:
    _write(store, exchange("a", conversation="c1"), exchange("b", conversation="c2"))
    erase(store, actor="ana", conversation="c1")
    assert [c.id for c in list_conversations(store, ANA)] == ["c2"]
    erase(store, actor="admin", tenant="acme")
    with store.session() as s:
        assert list(s.scalars(select(Capture.id))) == []
    with pytest.raises(InvalidRequestError, match="no tenant"):
        erase(store, actor="admin", tenant="acme")


def test_retention_erases_only_old_captures(store: Store) -> None:
    set_tenant_policy(store, "acme", actor="admin", retention_days=30)
    old = exchange("old", created=time.time() - 40 * 86400)
    new = exchange("new")
    other = exchange("other tenant, no policy", tenant="globex", created=time.time() - 400 * 86400)
    _write(store, old, new, other)
    results = apply_retention(store)
    assert [r.kind for r in results] == ["retention"]
    with store.session() as s:
        assert set(s.scalars(select(Capture.id))) == {new.id, other.id}


def test_export_takes_consented_captures_only_and_records_lineage(
    store: Store, tmp_path: Path
) -> None:
    yes = exchange("please use this one", "Answer one.", train=True)
    no = exchange("do not train on me", train=False)
    default = exchange("tenant default is off")
    _write(store, yes, no, default)
    out = tmp_path / "train.jsonl"
    result = export_captures(store, out)
    rows = _rows(out)
    assert result.rows == 1 and rows[0]["metadata"]["capture_id"] == yes.id
    assert rows[0]["messages"] == [
        {"role": "user", "content": "please use this one"},
        {"role": "assistant", "content": "Answer one."},
    ]
    assert len(result.sha256) == 64
    assert list(iter_captured_prompts(store)) == [
        [{"role": "user", "content": "please use this one"}]
    ]


def test_export_filters_and_boilerplate(store: Store, tmp_path: Path) -> None:
    set_tenant_policy(store, "acme", actor="admin", consent=True)
    sys_prompt = "You are the helpful assistant of ACME Corp."
    exchanges = [exchange(f"question number {i}", system=sys_prompt, model="a") for i in range(12)]
    exchanges.append(exchange("hi", model="b"))
    _write(store, *exchanges)
    out = tmp_path / "x.jsonl"
    result = export_captures(store, out, CaptureFilter(model="a"))
    assert result.rows == 12
    assert all(r["messages"][0]["role"] == "user" for r in _rows(out))  # boilerplate gone
    assert export_captures(store, out, CaptureFilter(min_chars=20)).rows == 12
    assert export_captures(store, out, CaptureFilter(model="b")).rows == 1


def test_export_redacts_when_the_tenant_redacts_at_export(store: Store, tmp_path: Path) -> None:
    set_tenant_policy(store, "acme", actor="admin", consent=True, redact="export")
    ex = exchange("call me at +44 20 7946 0958")
    _write(store, ex)
    with store.session() as s:
        cap = s.get(Capture, ex.id)
        assert cap is not None and "7946" in cap.request["messages"][0]["content"]
    out = tmp_path / "x.jsonl"
    export_captures(store, out)
    assert _rows(out)[0]["messages"][0]["content"] == "call me at [PHONE]"


def test_feedback_only_on_ones_own_answers(store: Store, tmp_path: Path) -> None:
    set_tenant_policy(store, "acme", actor="admin", consent=True)
    liked, disliked = exchange("one"), exchange("two")
    _write(store, liked, disliked)
    add_feedback(store, ANA, liked.id, 1)
    add_feedback(store, ANA, disliked.id, -1, "wrong answer")
    with pytest.raises(ConversationNotFound):
        add_feedback(store, BOB, liked.id, -1)
    with store.session() as s:
        fb = s.scalar(select(Feedback).where(Feedback.capture_id == disliked.id))
        assert fb is not None and fb.comment == "wrong answer"
    out = tmp_path / "down.jsonl"
    assert export_captures(store, out, CaptureFilter(feedback="down")).rows == 1
