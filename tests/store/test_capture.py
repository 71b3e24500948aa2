"""The capture writer: batched, never blocking, loses nothing it committed or was closed on."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from openclone.errors import ConfigError
from openclone.store import Store, open_store
from openclone.store.accounts import set_tenant_policy, set_user_consent
from openclone.store.conversations import get_conversation, list_conversations
from openclone.store.tables import Capture, User
from openclone.store.writer import CaptureWriter
from store.helpers import ANA, BOB, capture_ids, count_captures, exchange, write


def test_a_capture_keeps_the_exchange_with_consent_and_redaction(store: Store) -> None:
    set_tenant_policy(store, "acme", actor="admin", consent=False)
    a = exchange("mail me: ana@example.com", train=True)
    b = exchange("no header here")
    writer = write(store, a, b)
    with store.session() as s:
        ca, cb = s.get(Capture, a.id), s.get(Capture, b.id)
        assert ca is not None and cb is not None
        assert ca.consent is True and cb.consent is False  # the header wins; default is off
        assert ca.request["messages"][0]["content"] == "mail me: [EMAIL]"
        assert ca.redactions == {"EMAIL": 1}
        assert (ca.prompt_tokens, ca.completion_tokens, ca.model, ca.replica) == (5, 2, "m", "m#0")
        assert (ca.status, ca.latency_ms, ca.stream) == (200, 12.5, False)
        assert (
            ca.response is not None and ca.response["choices"][0]["message"]["content"] == "Sure."
        )
    assert (writer.written, writer.dropped, writer.failed, writer.queued) == (2, 0, 0, 0)


def test_a_persons_no_beats_the_header_which_beats_the_tenant(store: Store) -> None:
    set_tenant_policy(store, "acme", actor="admin", consent=True)
    set_user_consent(store, "acme", "bob", False, actor="bob")
    cases = {
        "tenant default": (exchange("1", user="ana"), True),
        "person opted out": (exchange("2", user="bob"), False),
        "person over header": (exchange("3", user="bob", train=True), False),  # issue 19
        "header over tenant": (exchange("4", user="ana", train=False), False),
        "no person": (exchange("5", user=None), True),
    }
    write(store, *(ex for ex, _ in cases.values()))
    with store.session() as s:
        got = {k: s.get(Capture, ex.id).consent for k, (ex, _) in cases.items()}  # type: ignore[union-attr]
    assert got == {k: want for k, (_, want) in cases.items()}


def test_a_tenant_that_redacts_later_or_never_keeps_the_text(store: Store) -> None:
    set_tenant_policy(store, "acme", actor="admin", redact="export")
    set_tenant_policy(store, "globex", actor="admin", redact="off")
    a, b = exchange("ana@example.com"), exchange("bob@example.com", tenant="globex")
    write(store, a, b)
    with store.session() as s:
        for ex in (a, b):
            cap = s.get(Capture, ex.id)
            assert cap is not None and "@example.com" in cap.request["messages"][0]["content"]
            assert cap.redactions == {}


def test_many_exchanges_are_committed_in_few_batches(store: Store) -> None:
    writer = CaptureWriter(store, flush_interval=0.2)
    sent = [exchange(f"q{i}") for i in range(300)]
    for ex in sent:
        writer.submit(ex)
    writer.close()
    assert writer.written == 300 and count_captures(store) == 300
    assert writer.batches <= 10


def test_a_full_queue_drops_and_counts(store: Store) -> None:
    writer = CaptureWriter(store, max_queue=1, flush_interval=0.5)
    for i in range(200):
        writer.submit(exchange(f"q{i}"))
    writer.close()
    assert writer.dropped > 0
    assert writer.written + writer.dropped == 200
    assert count_captures(store) == writer.written


@contextmanager
def _stalled(store: Store) -> Iterator[None]:
    """Another client holds the lock every capture insert needs, as a long migration or a
    bulk job would."""
    if store.is_sqlite:
        con = sqlite3.connect(str(store.engine.url.database), isolation_level=None)
        con.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            con.execute("ROLLBACK")
            con.close()
    else:
        with store.engine.connect() as c, c.begin():
            c.exec_driver_sql("LOCK TABLE captures IN EXCLUSIVE MODE")
            yield


def test_a_stalled_database_never_blocks_submit(store: Store) -> None:
    writer = CaptureWriter(store, max_queue=1, flush_interval=0)
    sent = [exchange(f"q{i}") for i in range(200)]
    with _stalled(store):
        for ex in sent:
            writer.submit(ex)  # would wait for the lock, forever, if submit could block
        assert writer.dropped >= 190  # the queue holds 1, the stuck batch a few more
    writer.close()
    assert writer.written + writer.dropped == 200 and writer.failed == 0
    assert count_captures(store) == writer.written


def test_close_commits_everything_and_later_captures_are_counted_as_dropped(store: Store) -> None:
    writer = CaptureWriter(store, flush_interval=10)  # nothing would be written for 10 s…
    sent = [exchange(f"q{i}") for i in range(20)]
    for ex in sent:
        writer.submit(ex)
    writer.close()  # …but close does not wait for the interval, and loses nothing
    assert capture_ids(store) == {ex.id for ex in sent}
    writer.submit(exchange("too late"))
    assert (writer.written, writer.dropped) == (20, 1)


def test_a_bad_exchange_does_not_stop_the_others(store: Store) -> None:
    writer = CaptureWriter(store)
    good, bad = exchange("fine"), exchange("broken")
    bad.request = {"messages": [object()]}  # not JSON-serialisable
    writer.submit(bad)
    writer.submit(good)
    writer.flush()
    later = exchange("after the failure")
    writer.submit(later)  # the thread is still alive
    writer.close()
    assert (writer.written, writer.failed) == (2, 1)
    assert capture_ids(store) == {good.id, later.id}


def test_text_either_database_would_refuse_is_stored_safely(store: Store) -> None:
    nul = exchange("a\x00b", "c\x00d", conversation="c-nul")
    surrogate = exchange("half a pair: \ud83d", conversation="c-sur")
    long_user = exchange("who am I", user="u" * 1000)
    long_conv = exchange("where am I", conversation="c" * 500)
    writer = write(store, nul, surrogate, long_user, long_conv)
    assert writer.failed == 0
    assert capture_ids(store) == {nul.id, surrogate.id, long_user.id, long_conv.id}
    assert [m["content"] for m in get_conversation(store, ANA, "c-nul").messages] == ["ab", "cd"]
    assert get_conversation(store, ANA, "c-sur").messages[0]["content"] == "half a pair: ?"
    with store.session() as s:
        assert s.get(Capture, long_conv.id).conversation_id is None  # type: ignore[union-attr]
        assert s.query(User).filter(User.name.startswith("uuu")).count() == 1


def test_conversations_follow_the_exchanges_and_stay_private(store: Store) -> None:
    writer = CaptureWriter(store)
    writer.submit(exchange("Hello there", "Hi!", conversation="c1"))
    writer.flush()
    history = [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": "Hi!"}]
    second = exchange("And then?", "Then this.", conversation="c1", history=history)
    sneaky = exchange("Sneaky", "no", user="bob", conversation="c1")  # not bob's
    writer.submit(second)
    writer.submit(sneaky)
    writer.close()
    conv = get_conversation(store, ANA, "c1")
    assert [(m["role"], m["content"]) for m in conv.messages] == [
        ("user", "Hello there"), ("assistant", "Hi!"),
        ("user", "And then?"), ("assistant", "Then this."),
    ]  # fmt: skip
    assert conv.messages[-1]["capture_id"] == second.id
    assert conv.title == "Hello there" and conv.model == "m"
    assert [c.id for c in list_conversations(store, ANA, "then")] == ["c1"]
    assert list_conversations(store, BOB) == []
    with store.session() as s:  # bob's capture is kept, but not filed under ana's chat
        cap = s.get(Capture, sneaky.id)
        assert cap is not None and cap.conversation_id is None


def test_a_regenerated_answer_replaces_the_tail(store: Store) -> None:
    write(store, exchange("Q1", "A1", conversation="c1"))
    history = [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}]
    write(store, exchange("Q2", "A2", conversation="c1", history=history))
    write(store, exchange("Q2", "A2 again", conversation="c1", history=history))
    conv = get_conversation(store, ANA, "c1")
    assert [m["content"] for m in conv.messages] == ["Q1", "A1", "Q2", "A2 again"]
    assert [m["position"] for m in conv.messages] == [0, 1, 2, 3]


def test_a_failed_exchange_is_captured_but_not_added_to_the_conversation(store: Store) -> None:
    failed = exchange("this broke", conversation="c-fail", status=502)
    write(store, failed)
    assert capture_ids(store) == {failed.id}
    assert list_conversations(store, ANA) == []


def test_an_unknown_redactor_is_refused_at_startup(store: Store) -> None:
    with pytest.raises(ConfigError, match="redactor"):
        CaptureWriter(store, redactor="no_such_module:redact")


_CHILD = """
import sys, time
sys.path.insert(0, sys.argv[2])
from openclone.store import open_store
from openclone.store.writer import CaptureWriter
from store.helpers import exchange
writer = CaptureWriter(open_store(sys.argv[1]), flush_interval=0.01)
i = 0
while True:
    ex = exchange(f"row {i}")
    ex.id = f"cap{i:06d}"
    writer.submit(ex)
    i += 1
    time.sleep(0.002)
"""


def test_kill_9_loses_no_committed_capture(store: Store, store_url: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, store_url, str(Path(__file__).parent.parent)],
        env={**os.environ},
    )
    try:
        deadline = time.monotonic() + 60
        while count_captures(store) < 50 and time.monotonic() < deadline:
            assert child.poll() is None, "the writing process died on its own"
            time.sleep(0.05)
        seen = capture_ids(store)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert len(seen) >= 50
    store.close()
    reopened = open_store(store_url)
    after = capture_ids(reopened)
    reopened.close()
    assert seen <= after  # everything that had been committed survived the kill
    numbers = sorted(int(c[3:]) for c in after)
    assert numbers == list(range(len(numbers)))  # committed in order, no holes
