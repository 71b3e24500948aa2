"""The admin page in a real browser (Debian's Chromium, headless) against a real server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import UI_OUT, open_page, start_server, stop_server

from openclone.store import open_store
from openclone.store.keys import create_key, list_keys

pytestmark = pytest.mark.slow

# No model loads: the admin page never calls one.
DEAD_UPSTREAM = """
[[models]]
name = "m"
engine = "openai"
params = { base_url = "http://127.0.0.1:9/v1", connect_timeout = 1 }
"""


def test_an_admin_sees_the_tenants_and_creates_a_key(tmp_path: Path, browser: Any) -> None:
    home = tmp_path / "home"
    store = open_store(None, home)
    admin = create_key(store, "ops", admin=True)[1]
    create_key(store, "acme", "ana")
    store.close()
    server = start_server(DEAD_UPSTREAM, tmp_path)
    try:
        page, problems = open_page(browser, 1200, 900)
        failed = lambda r: r.status >= 400 and not r.url.endswith("/favicon.ico")  # noqa: E731
        page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if failed(r) else None)

        page.goto(server.url + "/admin")
        page.fill("#key-input", admin)
        page.click("#signin-form button[type=submit]")
        page.wait_for_selector("#tenants tbody tr >> text=acme")
        assert "ops" in page.inner_text("#tenants")

        page.click("#tenants tbody button >> text=acme")
        page.wait_for_selector("#keys tbody tr >> text=ana")
        page.fill("#new-key-form input[name=user]", "zoe")
        page.click("#new-key-form button[type=submit]")
        page.wait_for_selector("#new-key:not([hidden])")
        secret = page.inner_text("#new-key-secret").strip()
        page.wait_for_selector("#keys tbody tr >> text=zoe")
        UI_OUT.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(UI_OUT / "admin.png"), full_page=True)
        assert not problems, problems
        assert secret.startswith("oc-")
        store = open_store(None, home)
        try:
            made = [k for k in list_keys(store, "acme") if k.user == "zoe"]
        finally:
            store.close()
        assert len(made) == 1 and secret.startswith(made[0].prefix) and made[0].scope == "user"
    finally:
        stop_server(server)


def test_an_admin_reviews_a_dataset_page_by_page(tmp_path: Path, browser: Any) -> None:
    import json

    from openclone.store.review import get_dataset, get_example, register

    xss = '<img src=x onerror="window.__xss=1">'
    rows = []
    for i in range(30):
        question = f"Question {i} on {'refund' if i % 5 == 0 else 'shipping'}"
        answer = xss if i == 1 else f"Answer {i}."
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        rows.append(json.dumps({"messages": messages, "metadata": {"teacher": "t"}}))
    path = tmp_path / "distilled.jsonl"
    path.write_text("\n".join(rows) + "\n")
    home = tmp_path / "home"
    store = open_store(None, home)
    admin = create_key(store, "ops", admin=True)[1]
    dataset = register(store, path, actor="ops").id
    store.close()
    server = start_server(DEAD_UPSTREAM, tmp_path)
    try:
        page, problems = open_page(browser, 1200, 900)
        page.on("dialog", lambda d: d.accept())  # "approve every matching row?"
        page.goto(server.url + "/admin")
        page.fill("#key-input", admin)
        page.click("#signin-form button[type=submit]")
        page.click(".tabs button >> text=Datasets")
        page.click("#datasets tbody button >> text=distilled.jsonl")
        page.wait_for_selector("#examples tbody tr >> text=Question 19 on shipping")
        assert xss in page.inner_text("#examples")  # shown as text, never as markup
        page.click(".pager[data-for=examples] .next")
        page.wait_for_selector("#examples tbody tr >> text=Question 29 on shipping")
        assert "Question 0 on" not in page.inner_text("#examples")

        page.fill("#examples-form input[name=search]", "refund")
        page.click("#examples-form button[type=submit]")
        page.wait_for_selector(".pager[data-for=examples] .where >> text=6 matching")
        page.click("#approve-matching")
        page.wait_for_selector("#review-result >> text=6 examples approved")

        page.fill("#examples-form input[name=search]", "")
        page.select_option("#examples-form select[name=state]", "pending")
        page.click("#examples-form button[type=submit]")
        page.wait_for_selector(".pager[data-for=examples] .where >> text=24 matching")
        page.check("#examples tbody tr:nth-child(1) .pick")
        page.check("#examples tbody tr:nth-child(2) .pick")
        page.click("#reject-selected")
        page.wait_for_selector("#review-result >> text=2 examples rejected")

        page.click('#examples tbody button >> text="3"')
        page.wait_for_selector("#example-title >> text=Row 3")
        page.fill("#example-answer", "A reviewed answer.")
        page.click("#save-answer")
        page.wait_for_selector("#example-original >> text=Original answer: Answer 3.")
        page.screenshot(path=str(UI_OUT / "admin-datasets.png"), full_page=True)
        injected = page.evaluate("window.__xss")
        assert not problems, problems
        assert injected is None
        store = open_store(None, home)
        try:
            counts = get_dataset(store, dataset).counts
            edited = get_example(store, dataset, 3)
        finally:
            store.close()
        assert (counts["approved"], counts["rejected"], counts["edited"]) == (6, 2, 1)
        assert edited.answer == "A reviewed answer." and edited.state == "pending"
    finally:
        stop_server(server)
