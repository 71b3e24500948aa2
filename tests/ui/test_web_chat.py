"""The web chat in a real browser (Debian's Chromium, headless) against a real server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BUNDLED, PAGE_TIMEOUT, UI_OUT, Server, start_server, stop_server
from sqlalchemy import select

from openclone.gateway.capture import new_capture_id
from openclone.store import open_store
from openclone.store.exchange import Exchange
from openclone.store.sealed import open_comment
from openclone.store.tables import Capture, Feedback, Vote
from openclone.store.writer import CaptureWriter

pytestmark = pytest.mark.slow

# Milliseconds. The bundled model on a busy 2-core machine can take minutes to answer.
REPLY_TIMEOUT = 180_000


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str, Path]]:
    workdir = tmp_path_factory.mktemp("ui")
    config = f"""
default_model = "{BUNDLED}"
[[models]]
name = "{BUNDLED}"
params = {{ n_ctx = 2048, n_parallel = 2 }}
[[models]]
name = "smollm2-twin"
params = {{ n_ctx = 2048, n_parallel = 2 }}
"""
    home = workdir / "home"
    key = subprocess.run(
        [sys.executable, "-m", "openclone", "keys", "create", "--tenant", "acme", "--user", "ana"],
        env={**os.environ, "OPENCLONE_HOME": str(home)},
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()[-1]  # fmt: skip
    server = start_server(config, workdir)
    yield server, key, home
    stop_server(server)


def _plant_script_answer(home: Path) -> str:
    """An answer containing markup, as a model could write it, in ana's history."""
    store = open_store(None, home)
    writer = CaptureWriter(store)
    conv = "planted-" + new_capture_id()[:8]
    writer.submit(
        Exchange(
            id=new_capture_id(),
            endpoint="chat",
            model=BUNDLED,
            request={"messages": [{"role": "user", "content": "Show me markup"}]},
            response={
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": "<script>window.pwned = 1</script><img src=x onerror='window.pwned=2'>",
                        },
                    }
                ]
            },
            status=200,
            latency_ms=1,
            stream=False,
            tenant="acme",
            user="ana",
            conversation=conv,
        )
    )
    writer.close()
    store.close()
    return conv


def test_chat_history_feedback_safety_and_arena(
    site: tuple[Server, str, Path], browser: object
) -> None:
    server, key, home = site
    UI_OUT.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1200, "height": 800})  # type: ignore[attr-defined]
    page.set_default_timeout(PAGE_TIMEOUT)
    dialogs: list[str] = []

    def answer(dialog: object) -> None:
        msg = dialog.message  # type: ignore[attr-defined]
        dialogs.append(msg)
        if msg.startswith("New name"):
            dialog.accept("Greetings chat")  # type: ignore[attr-defined]
        elif msg.startswith("What was wrong"):
            dialog.accept("too short")  # type: ignore[attr-defined]
        else:
            dialog.accept()  # type: ignore[attr-defined]

    page.on("dialog", answer)
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text))
    page.on("pageerror", lambda e: console.append(str(e)))
    page.goto(server.url + "/")
    page.fill("#key-input", key)
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector("#app:not([hidden])")
    assert "ana" in page.inner_text("#who")

    # Send a message; the streamed reply appears. Wait until the send is over, answered or
    # failed (the error banner): a failure then shows at once, with its message.
    page.fill("#prompt", "Hello! Who are you?")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => { const b = document.querySelectorAll('#messages .bubble.assistant'); "
        "return !document.querySelector('#banner').hidden || (b.length && "
        "b[b.length-1].textContent.trim().length > 0 && document.querySelector('#stop').hidden) }",
        timeout=REPLY_TIMEOUT,
    )
    assert page.is_hidden("#banner"), page.inner_text("#banner")
    page.screenshot(path=str(UI_OUT / "chat.png"))

    # Thumbs down with a comment is stored with the capture.
    page.click(".msg.assistant .down")
    page.wait_for_selector(".msg.assistant .down[aria-pressed=true]")

    # Reload: the conversation is still there; rename it.
    page.reload()
    page.wait_for_selector("#conversations li")
    assert "Hello! Who are you?" in page.inner_text("#conversations")
    page.click("#conversations li .rename")
    page.wait_for_function(
        "() => document.querySelector('#conversations').innerText.includes('Greetings chat')"
    )

    # A model answer with markup is shown as text and never runs.
    _plant_script_answer(home)
    page.reload()
    page.wait_for_selector("#conversations li")
    page.click("#conversations li .title >> text=Show me markup")
    page.wait_for_selector("#messages .bubble.assistant")
    assert "<script>window.pwned = 1</script>" in page.inner_text("#messages .bubble.assistant")
    assert page.evaluate("() => window.pwned") is None

    # Delete the renamed conversation.
    page.click("#conversations li:has-text('Greetings chat') .delete")
    page.wait_for_function(
        "() => !document.querySelector('#conversations').innerText.includes('Greetings chat')"
    )

    # Arena: two anonymous answers, a vote, names revealed, the leaderboard.
    page.click(".views button[data-view=arena]")
    page.fill("#arena-prompt", "Write a haiku about the sea.")
    page.click("#arena-form button[type=submit]")
    page.wait_for_selector(
        "#arena-vote:not([hidden]), #banner:not([hidden])", timeout=REPLY_TIMEOUT
    )
    assert page.is_hidden("#banner"), page.inner_text("#banner")
    assert page.inner_text("#arena-a").strip() and page.inner_text("#arena-b").strip()
    page.screenshot(path=str(UI_OUT / "arena.png"))
    page.click("#arena-vote button[data-winner=a]")
    page.wait_for_function(
        "() => document.querySelector('#arena-reveal').textContent.includes('Model A was')"
    )
    page.click(".views button[data-view=leaderboard]")
    page.wait_for_selector("#leaderboard tbody tr:nth-child(2)")
    board = page.inner_text("#leaderboard")
    assert BUNDLED in board and "smollm2-twin" in board
    page.screenshot(path=str(UI_OUT / "leaderboard.png"))

    # At phone width the page still works (the sidebar opens from the menu button).
    page.set_viewport_size({"width": 390, "height": 800})
    # The sidebar slides (a transition): look once it has come to rest.
    right = "document.querySelector('#sidebar').getBoundingClientRect().right"
    at_rest = "() => !document.getAnimations().length"
    page.wait_for_function(at_rest)
    assert page.evaluate(f"() => {right}") <= 0  # off-screen until the menu button opens it
    page.click("#open-sidebar")
    page.wait_for_function(at_rest)
    assert page.evaluate(f"() => {right}") > 0
    page.screenshot(path=str(UI_OUT / "phone-menu.png"))
    page.click("#close-sidebar")
    page.wait_for_function(at_rest)
    page.screenshot(path=str(UI_OUT / "phone.png"))
    page.close()

    store = open_store(None, home)
    with store.session() as s:
        q = select(Feedback.rating, Feedback.capture_id, Feedback.comment, Capture.tenant_id)
        # A new home encrypts at rest: the comment is read as the store's readers do.
        fb = [(r, open_comment(s, t, c, text)) for r, c, text, t in s.execute(q.join(Capture))]
        votes = list(s.scalars(select(Vote)))
    store.close()
    assert not [c for c in console if "Error" in c], console
    assert fb == [(-1, "too short")]
    assert len(votes) == 1 and votes[0].winner == "a"
    assert {votes[0].model_a, votes[0].model_b} == {BUNDLED, "smollm2-twin"}
