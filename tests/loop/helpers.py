"""Shared by the loop tests: the issue's minimal loop, captures written through the store,
and a stand-in teacher server that counts what it is asked."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from standins import JSONHandler, chat_reply, loopback
from store.helpers import exchange, write

from openclone.config import load_settings
from openclone.store import open_store
from openclone.store.accounts import set_tenant_policy

# The minimal form from issue 17, as written there (tiny budgets).
MINIMAL = """
[[loops]]
name = "support"
model = "support"                 # the alias the loop keeps promoted
tenant = "acme"
teacher = "smollm2-135m-instruct"
student_base = "smollm2-135m-instruct"
judge = "smollm2-135m-instruct"
every = "1d"
[loops.budget]
examples = 8
train_steps = 20
eval_prompts = 6
"""

QUESTIONS = [
    "How do I reset my password?",
    "Can I change the email address on my account?",
    "Why was my card declined at checkout?",
    "Where can I download last month's invoice?",
    "How long does shipping to Canada take?",
    "What is your refund policy for opened items?",
    "How do I cancel my subscription before renewal?",
    "Is there a discount for students or teachers?",
    "My order arrived damaged, what should I do?",
    "Can I add a second user to the team plan?",
    "Which browsers does the web dashboard support?",
    "How do I export my data as a spreadsheet?",
    "Do you offer phone support on weekends?",
    "What happens to my files if I downgrade?",
]


def write_config(path: Path, text: str = MINIMAL) -> Path:
    path.write_text(text)
    return path


def add_captures(config: Path, n: int, tenant: str = "acme") -> None:
    """``n`` consented support chats of ``tenant``, written as the gateway's writer would."""
    store = open_store(load_settings(config))
    try:
        set_tenant_policy(store, tenant, actor="admin", consent=True)
        write(store, *(exchange(q, "Let me check that.", tenant=tenant) for q in QUESTIONS[:n]))
    finally:
        store.close()


STANDIN_ANSWER = "Thanks for asking. Open Settings, choose Account, and follow the steps shown."


@dataclass
class StandIn:
    """A stand-in teacher (NOT a model): an OpenAI-compatible server that answers every
    chat with a fixed sentence and keeps each request's last user message."""

    url: str
    asked: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


@contextmanager
def standin_teacher(hold_after: int | None = None) -> Iterator[StandIn]:
    """``hold_after``: answer that many chats, then hold each next one until ``release``
    is set (a teacher busy mid-step, for a test to stop the run there)."""
    asked: list[str] = []
    lock = threading.Lock()
    release = threading.Event()

    class Handler(JSONHandler):
        def do_GET(self) -> None:
            self.send_json({"object": "list", "data": [{"id": "standin", "object": "model"}]})

        def do_POST(self) -> None:
            body = self.read_json()
            users = [m for m in body["messages"] if m["role"] == "user"]
            with lock:
                asked.append(str(users[-1]["content"]) if users else "")
                held = hold_after is not None and len(asked) > hold_after
            if held:
                release.wait(60)  # bounded: a test that never releases must still end
            self.send_json(chat_reply(body["model"], STANDIN_ANSWER))

    with loopback(Handler) as url:
        try:
            yield StandIn(f"{url}/v1", asked, release)
        finally:
            release.set()  # no held request keeps the server from shutting down
