"""The admin page in a real browser (Debian's Chromium, headless) against a real server."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import start_server, stop_server
from test_web_chat import OUT, PAGE_TIMEOUT, _chromium

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


def test_an_admin_sees_the_tenants_and_creates_a_key(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    home = tmp_path / "home"
    store = open_store(None, home)
    admin = create_key(store, "ops", admin=True)[1]
    create_key(store, "acme", "ana")
    store.close()
    server = start_server(DEAD_UPSTREAM, tmp_path)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=_chromium(), headless=True, args=["--no-sandbox"]
            )
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.set_default_timeout(PAGE_TIMEOUT)
            problems: list[str] = []
            page.on("pageerror", lambda e: problems.append(str(e)))
            failed = lambda r: r.status >= 400 and not r.url.endswith("/favicon.ico")  # noqa: E731
            page.on(
                "response", lambda r: problems.append(f"{r.status} {r.url}") if failed(r) else None
            )

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
            OUT.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(OUT / "admin.png"), full_page=True)
            browser.close()
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
