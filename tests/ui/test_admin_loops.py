"""The admin page's Loops tab in a real browser (Debian's Chromium, headless) against a real
server: the loops' table, each loop's charts, pause and resume."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import UI_OUT, open_page, start_server, stop_server
from loop.fabricate import TWO_LOOPS, finished_run, report
from loop.helpers import QUESTIONS
from store.helpers import exchange, write

from openclone.config import load_settings
from openclone.loop import get_loop
from openclone.loop.state import is_paused
from openclone.store import open_store
from openclone.store.keys import create_key

pytestmark = pytest.mark.slow

CONFIG = TWO_LOOPS


def test_an_admin_watches_a_loop_in_charts_and_pauses_it(tmp_path: Path, browser: Any) -> None:
    from playwright.sync_api import ConsoleMessage

    config = tmp_path / "loops.toml"
    config.write_text(CONFIG)
    loop = get_loop(load_settings(config), "support")
    home = tmp_path / "home"
    store = open_store(None, home)
    try:
        admin = create_key(store, "ops", admin=True)[1]
        day_ago = time.time() - 86400
        write(store, *(exchange(q, model="support", created=day_ago) for q in QUESTIONS))
        for i, rate in enumerate((0.4, 0.55, 0.7)):
            finished_run(store, loop, teacher_usd=0.1 * (i + 1), training_usd=1.0,
                         reports={"incumbent": report(rate, rate - 0.2, rate + 0.2, 6),
                                  "teacher": report(rate - 0.1, 0.0, 0.9, 6)})  # fmt: skip
    finally:
        store.close()
    server = start_server(CONFIG, tmp_path)
    try:
        page, problems = open_page(browser, 1400, 1000)

        # A chart that broke the Content Security Policy would show only here.
        def console(m: ConsoleMessage) -> None:
            if m.type == "error" and not m.location["url"].endswith("/favicon.ico"):
                problems.append(m.text)

        page.on("console", console)
        page.goto(server.url + "/admin")
        page.fill("#key-input", admin)
        page.click("#signin-form button[type=submit]")
        page.click(".tabs button >> text=Loops")
        row = page.locator("#loops tbody tr", has_text="support")
        row.wait_for()
        cells = row.locator("td").all_inner_texts()
        assert cells[:6] == [
            "support", "support", "-", "active", "3: finished", "promoted: support@4 judged"
        ]  # fmt: skip

        row.get_by_role("button", name="support", exact=True).click()
        page.wait_for_selector("#loop-name >> text=support: 3 runs")
        winrate = page.locator("#chart-winrate")
        assert winrate.locator(".series.s1 circle.point").count() == 3  # one per run
        assert winrate.locator(".series.s1 line.ci").count() == 3
        assert winrate.locator("line.ref").count() == 1  # the 50% line
        # Its accessible name: the title, then every run's numbers.
        named = re.compile(r"^Win rate vs the incumbent .* #3: vs incumbent 70% ")
        assert winrate.get_by_role("img", name=named).count() == 1
        numbers = winrate.locator("details table").text_content() or ""
        assert "70% (50%\u201390%, n=6)" in numbers
        assert page.locator("#chart-spend .series.s1 rect.bar").count() == 3
        assert page.locator("#chart-cost polyline").count() == 2  # serving, API
        assert "$0.3" in (page.locator("#chart-spend details table").text_content() or "")
        UI_OUT.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(UI_OUT / "admin-loops.png"), full_page=True)

        page.locator("#loops tbody tr", has_text="sales").get_by_role(
            "button", name="sales"
        ).click()
        page.wait_for_selector("#loop-name >> text=sales: 0 runs")
        assert page.locator("#loop-detail .empty").all_inner_texts() == ["no runs yet"] * 3

        row.get_by_role("button", name="Pause").click()
        row.get_by_role("button", name="Resume").wait_for()
        assert row.locator("td").nth(3).inner_text() == "paused"
        store = open_store(None, home)
        try:
            assert is_paused(store, "support") and not is_paused(store, "sales")
        finally:
            store.close()
        row.get_by_role("button", name="Resume").click()
        row.get_by_role("button", name="Pause").wait_for()
        assert row.locator("td").nth(3).inner_text() == "active"
        assert not problems, problems
    finally:
        stop_server(server)
