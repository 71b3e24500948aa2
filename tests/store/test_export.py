"""Export of captures as training data: consented only, filtered, de-boilerplated, recorded."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from openclone.errors import InvalidRequestError
from openclone.store import Store
from openclone.store.accounts import set_tenant_policy, set_user_consent
from openclone.store.audit import list_audit
from openclone.store.export import CaptureFilter, export_captures, iter_captured_prompts
from openclone.store.privacy import add_feedback
from openclone.store.tables import Export, ExportItem
from store.helpers import ANA, exchange, jsonl, write


def test_only_consented_captures_are_exported(store: Store, tmp_path: Path) -> None:
    set_user_consent(store, "acme", "bob", True, actor="bob")
    yes = exchange("please use this one", "Answer one.", train=True)
    no = exchange("do not train on me", train=False)
    default = exchange("tenant default is off")
    bob = exchange("bob opted in", user="bob")
    bob_no = exchange("but not this time", user="bob", train=False)
    write(store, yes, no, default, bob, bob_no)
    out = tmp_path / "train.jsonl"
    result = export_captures(store, out)
    rows = jsonl(out)
    assert result.rows == 2 and [r["metadata"]["capture_id"] for r in rows] == [yes.id, bob.id]
    assert rows[0]["messages"] == [
        {"role": "user", "content": "please use this one"},
        {"role": "assistant", "content": "Answer one."},
    ]
    prompts = list(iter_captured_prompts(store))
    assert prompts == [
        [{"role": "user", "content": "please use this one"}],
        [{"role": "user", "content": "bob opted in"}],
    ]


def test_an_export_is_recorded_with_its_hash_filters_and_captures(
    store: Store, tmp_path: Path
) -> None:
    set_tenant_policy(store, "acme", actor="admin", consent=True)
    a, b = exchange("one"), exchange("two")
    write(store, a, b, exchange("failed", status=500))
    out = tmp_path / "sub" / "x.jsonl"
    result = export_captures(store, out, CaptureFilter(tenant="acme"), actor="alice")
    assert result.rows == 2  # the failed exchange is not training data
    assert result.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    with store.session() as s:
        export = s.get(Export, result.id)
        assert export is not None
        assert (export.path, export.rows, export.filters, export.actor) == (
            str(out.resolve()), 2, {"tenant": "acme"}, "alice",
        )  # fmt: skip
        items = set(
            s.scalars(select(ExportItem.capture_id).where(ExportItem.export_id == result.id))
        )
    assert items == {a.id, b.id}
    (entry,) = list_audit(store, action="export")
    assert entry.actor == "alice" and entry.detail["sha256"] == result.sha256


def test_filters_by_tenant_model_time_feedback_and_length(store: Store, tmp_path: Path) -> None:
    for tenant in ("acme", "globex"):
        set_tenant_policy(store, tenant, actor="admin", consent=True)
    now = time.time()
    old = exchange("an old question", created=now - 10 * 86400)
    short = exchange("hi", "yo", model="small")
    liked = exchange("a question someone liked", model="small")
    theirs = exchange("another tenant's question", tenant="globex")
    write(store, old, short, liked, theirs)
    add_feedback(store, ANA, liked.id, 1)
    out = tmp_path / "x.jsonl"

    def ids(f: CaptureFilter) -> list[str]:
        export_captures(store, out, f)
        return [r["metadata"]["capture_id"] for r in jsonl(out)]

    assert ids(CaptureFilter(tenant="globex")) == [theirs.id]
    assert ids(CaptureFilter(model="small")) == [short.id, liked.id]
    assert ids(CaptureFilter(since=now - 86400, tenant="acme")) == [short.id, liked.id]
    assert ids(CaptureFilter(until=now - 86400)) == [old.id]
    assert ids(CaptureFilter(feedback="up")) == [liked.id]
    assert ids(CaptureFilter(feedback="down")) == []
    assert ids(CaptureFilter(min_chars=10, tenant="acme", model="small")) == [liked.id]


def test_bad_filters_are_refused_with_a_reason(store: Store, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="'up' or 'down'"):
        CaptureFilter(feedback="meh")
    with pytest.raises(InvalidRequestError, match="after since"):
        CaptureFilter(since=10, until=5)
    with pytest.raises(InvalidRequestError, match="no tenant named 'nope'"):
        export_captures(store, tmp_path / "x.jsonl", CaptureFilter(tenant="nope"))


# 12 + 1 rows: the preamble opens 12 of 13. 8 + 1 rows: under the minimum of 10 to tell.
@pytest.mark.parametrize(("rows", "removed"), [(12, True), (8, False)])
def test_a_system_prompt_on_most_rows_is_boilerplate(
    store: Store, tmp_path: Path, rows: int, removed: bool
) -> None:
    set_tenant_policy(store, "acme", actor="admin", consent=True)
    preamble = "You are the helpful assistant of ACME Corp."
    exchanges = [exchange(f"question number {i}", system=preamble) for i in range(rows)]
    exchanges.append(exchange("with its own system prompt", system="Answer in French."))
    write(store, *exchanges)
    out = tmp_path / "x.jsonl"
    result = export_captures(store, out)
    firsts = [r["messages"][0] for r in jsonl(out)]
    assert result.rows == rows + 1
    with_preamble = sum(m["content"] == preamble for m in firsts)
    assert with_preamble == (0 if removed else rows)
    assert {"role": "system", "content": "Answer in French."} in firsts  # not boilerplate
    assert result.skipped.get("boilerplate system prompts removed", 0) == (rows if removed else 0)


def test_a_tenant_redacting_at_export_gets_redacted_rows(store: Store, tmp_path: Path) -> None:
    set_tenant_policy(store, "acme", actor="admin", consent=True, redact="export")
    write(store, exchange("write to ana@example.com", "Done, ana@example.com."))
    out = tmp_path / "x.jsonl"
    export_captures(store, out)
    assert [m["content"] for m in jsonl(out)[0]["messages"]] == [
        "write to [EMAIL]", "Done, [EMAIL].",
    ]  # fmt: skip
    assert list(iter_captured_prompts(store)) == [[{"role": "user", "content": "write to [EMAIL]"}]]
