"""The capture writer: batched, never blocking, loses nothing it acknowledged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from openclone.store import Store, open_store
from openclone.store.accounts import Principal, set_tenant_policy
from openclone.store.conversations import get_conversation, list_conversations
from openclone.store.tables import Capture
from openclone.store.writer import CaptureWriter
from store.helpers import exchange

ANA = Principal("acme", "ana", None, "user")
BOB = Principal("acme", "bob", None, "user")


def _count(store: Store) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(Capture)) or 0)


def test_captures_are_written_with_consent_and_redaction(store: Store) -> None:
    writer = CaptureWriter(store)
    set_tenant_policy(store, "acme", actor="admin", consent=False)
    a = exchange("mail me: ana@example.com", train=True)
    b = exchange("no header here")
    writer.submit(a)
    writer.submit(b)
    writer.close()
    with store.session() as s:
        ca, cb = s.get(Capture, a.id), s.get(Capture, b.id)
        assert ca is not None and cb is not None
        assert ca.consent is True and cb.consent is False  # the header wins; default is off
        assert ca.request["messages"][0]["content"] == "mail me: [EMAIL]"
        assert ca.redactions == {"EMAIL": 1}
        assert (ca.prompt_tokens, ca.completion_tokens, ca.model) == (5, 2, "m")
    assert writer.written == 2 and writer.dropped == 0


def test_a_full_queue_drops_and_counts_instead_of_blocking(store: Store) -> None:
    writer = CaptureWriter(store, max_queue=1, flush_interval=0.5)
    for i in range(200):
        writer.submit(exchange(f"q{i}"))  # returns at once even with the queue full
    writer.close()
    assert writer.dropped > 0
    assert writer.written + writer.dropped == 200
    assert _count(store) == writer.written


def test_a_bad_exchange_does_not_stop_the_others(store: Store) -> None:
    writer = CaptureWriter(store)
    good, bad = exchange("fine"), exchange("broken")
    bad.request = {"messages": [object()]}  # not JSON-serialisable
    writer.submit(bad)
    writer.submit(good)
    writer.close()
    assert (writer.written, writer.failed) == (1, 1)
    with store.session() as s:
        assert s.get(Capture, good.id) is not None


def test_conversations_follow_the_exchanges_and_stay_private(store: Store) -> None:
    writer = CaptureWriter(store)
    writer.submit(exchange("Hello there", "Hi!", conversation="c1"))
    writer.flush()
    history = [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": "Hi!"}]
    writer.submit(exchange("And then?", "Then this.", conversation="c1", history=history))
    writer.submit(exchange("Sneaky", "no", user="bob", conversation="c1"))  # not bob's
    writer.close()
    conv = get_conversation(store, ANA, "c1")
    assert [(m["role"], m["content"]) for m in conv.messages] == [
        ("user", "Hello there"), ("assistant", "Hi!"),
        ("user", "And then?"), ("assistant", "Then this."),
    ]  # fmt: skip
    assert conv.title == "Hello there"
    assert [c.id for c in list_conversations(store, ANA, "then")] == ["c1"]
    assert list_conversations(store, BOB) == []


_CHILD = """
import sys, time
from openclone.store import open_store
from openclone.store.writer import CaptureWriter
sys.path.insert(0, sys.argv[2])
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
        while _count(store) < 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        with store.session() as s:
            seen = set(s.scalars(select(Capture.id)))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert len(seen) >= 50
    reopened = open_store(store_url)
    with reopened.session() as s:
        after = set(s.scalars(select(Capture.id)))
    reopened.close()
    assert seen <= after  # everything that had been committed survived the kill
    numbers = sorted(int(c[3:]) for c in after)
    assert numbers == list(range(len(numbers)))  # committed in order, no holes
