"""Issue 17 item 8 over HTTP on a real server: the loops' status, each loop's runs as a
series (win rates with their CI, teacher and training spend, $/1M at each run's end), and
pause/resume under ``/api/admin/loops``, for admin keys only."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import start_server, stop_server
from loop.fabricate import TWO_LOOPS, finished_run, report
from loop.helpers import QUESTIONS
from store.helpers import exchange, write

from openclone.config import load_settings
from openclone.loop import get_loop
from openclone.store import open_store
from openclone.store.audit import list_audit
from openclone.store.keys import create_key

pytestmark = pytest.mark.slow

CONFIG = TWO_LOOPS
API_PER_1M = (5 * 2.5 + 2 * 10) / 7  # each capture: 5 prompt and 2 completion tokens


def make_history(tmp_path: Path) -> tuple[str, str, str]:
    """Two finished runs of "support", with captures served before each run's end; the
    admin's key id, the admin's key and a person's key."""
    config = tmp_path / "loops.toml"
    config.write_text(CONFIG)
    loop = get_loop(load_settings(config), "support")
    store = open_store(None, tmp_path / "home")
    try:
        info, admin = create_key(store, "ops", admin=True)
        person = create_key(store, "acme", "ana")[1]
        day_ago = time.time() - 86400
        write(store, *(exchange(q, model="support@1", created=day_ago) for q in QUESTIONS[:10]))
        finished_run(store, loop, teacher_usd=0.25, training_usd=1.5,
                     reports={"teacher": report(0.3, 0.1, 0.5, 6)})  # fmt: skip
        # Served after run 1 ended: only run 2's $/1M counts them.
        write(store, *(exchange(q, model="support@2") for q in QUESTIONS[:10]))
        finished_run(store, loop, teacher_usd=0.5, training_usd=2.0, action="reject",
                     reports={"incumbent": report(0.4, 0.2, 0.6, 6),
                              "teacher": report(0.45, 0.25, 0.65, 6)})  # fmt: skip
    finally:
        store.close()
    return info.id, admin, person


def _error(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    return dict(resp.json()["error"])


def test_an_admin_sees_the_loops_their_runs_and_pauses_one(tmp_path: Path) -> None:
    key_id, admin_key, person = make_history(tmp_path)
    server = start_server(CONFIG, tmp_path)
    try:
        with (
            httpx.Client(base_url=server.url, timeout=60,
                         headers={"Authorization": f"Bearer {admin_key}"}) as admin,
            httpx.Client(base_url=server.url, timeout=60,
                         headers={"Authorization": f"Bearer {person}"}) as ana,
        ):  # fmt: skip
            for refused in (
                ana.get("/api/admin/loops"),
                ana.get("/api/admin/loops/support/runs"),
                ana.post("/api/admin/loops/support/pause", json={}),
            ):
                assert _error(refused, 403)["type"] == "permission_error"
            for missing in (
                admin.get("/api/admin/loops/nope/runs"),
                admin.post("/api/admin/loops/nope/pause", json={}),
            ):
                error = _error(missing, 404)
                assert (error["type"], error["code"]) == ("invalid_request_error", "not_found")
                assert "no loop named 'nope'" in error["message"]

            listed = admin.get("/api/admin/loops")
            assert listed.status_code == 200, listed.text
            support, sales = listed.json()["data"]
            assert (support["name"], sales["name"]) == ("support", "sales")
            assert (support["paused"], support["last_run"]["number"]) == (False, 2)
            assert support["last_run"]["decision"] == "rejected: support@3 judged"
            assert support["costs"]["last_run"] == {
                "teacher_usd": 0.5, "training_usd": 2.0, "total_usd": 2.5
            }  # fmt: skip
            assert support["costs"]["api_usd_per_1m"] == pytest.approx(API_PER_1M, rel=1e-3)
            assert sales["last_run"] is None

            runs = admin.get("/api/admin/loops/support/runs")
            assert runs.status_code == 200, runs.text
            first, second = runs.json()["data"]  # oldest first
            assert (first["number"], second["number"]) == (1, 2)
            assert first["vs_incumbent"] is None  # nothing served the model yet
            assert first["vs_teacher"] == {"win_rate": 0.3, "ci_low": 0.1, "ci_high": 0.5, "n": 6}
            assert second["vs_incumbent"] == {
                "win_rate": 0.4, "ci_low": 0.2, "ci_high": 0.6, "n": 6
            }  # fmt: skip
            assert (first["teacher_usd"], first["training_usd"]) == (0.25, 1.5)
            assert (second["teacher_usd"], second["training_usd"]) == (0.5, 2.0)
            assert (first["decision"], second["action"]) == ("promoted: support@2 judged", "reject")
            # $24 a day over the day since the first capture: 70 tokens at run 1's end, 140
            # at run 2's (the captures served after run 1 count only from then on).
            assert first["serving_usd_per_1m"] == pytest.approx(24 / 70 * 1e6, rel=1e-3)
            assert second["serving_usd_per_1m"] == pytest.approx(24 / 140 * 1e6, rel=1e-3)
            assert first["api_usd_per_1m"] == pytest.approx(API_PER_1M, rel=1e-3)
            assert admin.get("/api/admin/loops/sales/runs").json()["data"] == []
            newest = admin.get("/api/admin/loops/support/runs", params={"limit": 1}).json()
            assert [r["number"] for r in newest["data"]] == [2]

            paused = admin.post("/api/admin/loops/support/pause", json={})
            assert paused.status_code == 200, paused.text
            assert (paused.json()["paused"], paused.json()["next_due"]) == (True, None)
            assert admin.get("/api/admin/loops").json()["data"][0]["paused"] is True
            resumed = admin.post("/api/admin/loops/support/resume", json={})
            assert resumed.json()["paused"] is False
    finally:
        stop_server(server)
    store = open_store(None, tmp_path / "home")
    try:
        actions = [(e.action, e.actor, e.detail) for e in list_audit(store, 10, action="loop")]
    finally:
        store.close()
    actor = f"key:{key_id}"
    assert actions == [
        ("loop.resume", actor, {"loop": "support"}), ("loop.pause", actor, {"loop": "support"})
    ]  # fmt: skip
