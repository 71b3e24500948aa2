"""Issue 17 item 3, the store: a dataset under review, paged, searched, edited, approved
and exported; sealed at rest, audited, and reached by erasure."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlalchemy import select

from openclone.errors import InvalidRequestError
from openclone.store import Store, review
from openclone.store.accounts import set_tenant_policy
from openclone.store.audit import list_audit
from openclone.store.crypto import SEALED, Keyring, LocalMasterKey
from openclone.store.privacy import erase
from openclone.store.review import (
    ReviewNotFound,
    edit_answer,
    export_approved,
    get_example,
    list_examples,
    register,
    set_state,
)
from openclone.store.tables import Export, ReviewExample
from store.helpers import exchange, write

ROWS = 50_000


def _row(question: str, answer: str, **metadata: object) -> str:
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return json.dumps({"messages": messages, "metadata": metadata})


def _big(path: Path) -> Path:
    """50K teacher rows; every 100th asks about a refund."""
    topic = lambda i: "refund" if i % 100 == 0 else "shipping"  # noqa: E731
    lines = (
        _row(f"Question {i} about {topic(i)} policy", f"Answer {i}.", teacher="t", source="prompts")
        for i in range(ROWS)
    )
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_50k_row_dataset_pages_searches_edits_and_exports(store: Store, tmp_path: Path) -> None:
    store.keyring = Keyring(LocalMasterKey(os.urandom(32)), encrypt=True)
    info = register(store, _big(tmp_path / "big.jsonl"), actor="ops")
    assert (info.rows, info.counts["pending"], info.tenant) == (ROWS, ROWS, "default")
    assert register(store, tmp_path / "big.jsonl", actor="ops").id == info.id  # same file

    first = list_examples(store, info.id, limit=50)
    assert [e.row for e in first.data] == list(range(50)) and first.has_more
    assert first.total == ROWS and first.data[3].prompt == "Question 3 about shipping policy"
    assert first.data[3].source == "teacher" and first.data[3].teacher == "t"
    last = list_examples(store, info.id, after=ROWS - 51, limit=50)
    assert [e.row for e in last.data] == list(range(ROWS - 50, ROWS)) and not last.has_more

    refunds = list_examples(store, info.id, search="REFUND policy", limit=20)
    assert refunds.total == ROWS // 100
    assert [e.row for e in refunds.data] == list(range(0, 2000, 100))
    assert list_examples(store, info.id, search="refun").total == 0  # whole words only

    approved = set_state(store, info.id, "approved", actor="ops", search="refund")
    assert approved == ROWS // 100
    assert list_examples(store, info.id, state="approved").total == approved
    edited = edit_answer(store, info.id, 7, "A better answer.", actor="ops")
    assert (edited.answer, edited.original, edited.edited) == (
        "A better answer.",
        "Answer 7.",
        True,
    )
    assert set_state(store, info.id, "approved", actor="ops", rows=[7]) == 1
    assert set_state(store, info.id, "rejected", actor="ops", rows=[100, 200]) == 2

    out = tmp_path / "reviewed.jsonl"
    assert export_approved(store, info.id, out, actor="ops") == approved + 1 - 2
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    answers = {r["messages"][0]["content"]: r["messages"][-1]["content"] for r in rows}
    assert answers["Question 7 about shipping policy"] == "A better answer."
    assert answers["Question 0 about refund policy"] == "Answer 0."
    assert "Question 100 about refund policy" not in answers

    # Sealed at rest: no example text, and no plain word, in the database.
    with store.session() as s:
        raw = s.scalar(select(ReviewExample).where(ReviewExample.row == 7))
        assert raw is not None and raw.example.startswith(SEALED) and raw.answer
        assert raw.answer.startswith(SEALED) and "shipping" not in raw.words
    actions = [e.action for e in list_audit(store, 10, action="review")]
    assert actions == ["review.export", "review.reject", "review.approve", "review.edit",
                       "review.approve", "review.add"]  # fmt: skip


def test_bad_files_rows_and_states_are_clear_errors(store: Store, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="no file"):
        register(store, tmp_path / "missing.jsonl", actor="ops")
    bad = tmp_path / "alpaca.jsonl"
    bad.write_text('{"instruction": "hi", "output": "hello"}\n')
    with pytest.raises(InvalidRequestError, match="line 1: a review needs OpenAI chat rows"):
        register(store, bad, actor="ops")
    good = tmp_path / "good.jsonl"
    good.write_text(_row("hi", "hello") + "\n\n" + _row("bye", "ciao") + "\n")
    info = register(store, good, actor="ops")
    assert info.rows == 2 and get_example(store, info.id[:6], 1).prompt == "bye"
    with pytest.raises(ReviewNotFound):
        get_example(store, info.id, 2)
    with pytest.raises(ReviewNotFound, match="no row"):
        set_state(store, info.id, "approved", actor="ops", rows=[0, 9])
    with pytest.raises(InvalidRequestError, match="state"):
        set_state(store, info.id, "maybe", actor="ops", rows=[0])
    with pytest.raises(InvalidRequestError, match="empty"):
        edit_answer(store, info.id, 0, "  ", actor="ops")
    assert not edit_answer(store, info.id, 0, "hello", actor="ops").edited  # the original


def test_examples_of_captures_are_sealed_for_their_tenant_and_erased_with_them(
    store: Store, tmp_path: Path
) -> None:
    set_tenant_policy(store, "acme", actor="admin", consent=True)
    kept, gone = exchange("keep this question"), exchange("erase this question")
    write(store, kept, gone)
    path = tmp_path / "distilled.jsonl"
    path.write_text("".join(
        _row(f"{ex.request['messages'][-1]['content']}", "ok", capture_id=ex.id, teacher="t")
        + "\n" for ex in (kept, gone)
    ))  # fmt: skip
    info = register(store, path, actor="ops")
    assert info.tenant == "acme"
    assert [e.source for e in list_examples(store, info.id).data] == ["capture", "capture"]
    set_state(store, info.id, "approved", actor="ops")
    out = tmp_path / "reviewed.jsonl"
    assert export_approved(store, info.id, out, actor="ops") == 2
    with store.session() as s:  # the export is lineage an erasure follows
        assert s.scalar(select(Export).where(Export.path == str(out.resolve()))) is not None

    result = erase(store, actor="ops", capture=gone.id)
    assert result.counts["review_examples"] == 1
    page = list_examples(store, info.id)
    assert [e.capture_id for e in page.data] == [kept.id] and page.total == 1
    assert [
        json.loads(line)["metadata"]["capture_id"] for line in out.read_text().splitlines()
    ] == [kept.id]


def test_registering_a_file_registered_at_the_same_moment_returns_that_registration(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two registrations of one file racing: both found none, the other committed first."""
    path = tmp_path / "d.jsonl"
    path.write_text(_row("hi", "hello") + "\n")
    real_read, other = review._read, []

    def read_while_another_registers(p: Path, max_bytes: int | None) -> list[dict[str, object]]:
        monkeypatch.setattr(review, "_read", real_read)  # the other one reads as usual
        other.append(register(store, path, actor="other"))  # between our check and insert
        return real_read(p, max_bytes)

    monkeypatch.setattr(review, "_read", read_while_another_registers)
    assert register(store, path, actor="ops").id == other[0].id
    assert len(list_audit(store, 10, action="review.add")) == 1


def test_a_size_cap_refuses_a_larger_file(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text((_row("hi", "hello") + "\n") * 100)
    with pytest.raises(InvalidRequestError, match="at most 1024") as caught:
        register(store, path, actor="ops", max_bytes=1024)
    assert caught.value.param == "path"
    assert register(store, path, actor="ops").rows == 100  # the CLI: no cap
