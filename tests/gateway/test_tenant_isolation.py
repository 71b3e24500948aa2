"""A key of tenant A never sees tenant B's conversations, answers or data, on any route."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import BUNDLED, Server, start_server, stop_server

pytestmark = pytest.mark.slow


def _key(home: Path, tenant: str, user: str, *flags: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "openclone", "keys", "create", "--tenant", tenant, *flags,
         *(("--user", user) if user else ())],
        env={**os.environ, "OPENCLONE_HOME": str(home)}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.splitlines()[-1]


BRIEF = (
    "Acme's confidential brief: the launch moves to March, the budget is cut by a third and "
    "the two regional offices merge. Summarise it in one line."
)


def _reused_after(server: Server, who: httpx.Client, prompt: str, admin: str) -> int:
    """Prompt tokens the bundled model has reused from earlier requests, after this one."""
    who.post(
        "/v1/chat/completions",
        json={"model": BUNDLED, "max_tokens": 2, "messages": [{"role": "user", "content": prompt}]},
    ).raise_for_status()
    (replica,) = server.health(admin)["models"][BUNDLED]["replicas"]
    return int(replica["detail"]["prompt_tokens"]["reused"])


def test_tenants_and_people_are_isolated_on_every_route(tmp_path: Path) -> None:
    home = tmp_path / "home"
    keys = {who: _key(home, *who.split("/")) for who in ("acme/ana", "globex/gus", "acme/bob")}
    admin = _key(home, "ops", "", "--admin")  # /health's replica detail is for admins
    server = start_server(f'default_model = "{BUNDLED}"\n', tmp_path)
    try:

        def client(who: str) -> httpx.Client:
            return httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {keys[who]}"}, timeout=60
            )

        ana, gus, bob = client("acme/ana"), client("globex/gus"), client("acme/bob")
        conv = ana.post("/api/conversations", json={"title": "ana's secret plan"}).json()
        reply = ana.post(
            "/v1/chat/completions",
            headers={"X-OpenClone-Conversation": conv["id"]},
            json={"model": BUNDLED, "max_tokens": 4,
                  "messages": [{"role": "user", "content": "secret plan"}]},
        )  # fmt: skip
        capture = reply.headers["x-openclone-capture-id"]
        # Cached prompt prefixes are shared within a tenant only: a fast first token must
        # not tell globex what acme asked.
        reused = _reused_after(server, ana, BRIEF, admin)
        assert _reused_after(server, gus, BRIEF, admin) == reused
        assert _reused_after(server, bob, BRIEF, admin) > reused + 40
        for other in (gus, bob):  # another tenant, and another person of the same tenant
            assert other.get("/api/conversations").json() == []
            assert other.get("/api/conversations", params={"q": "secret"}).json() == []
            assert other.get(f"/api/conversations/{conv['id']}").status_code == 404
            assert (
                other.patch(f"/api/conversations/{conv['id']}", json={"title": "x"}).status_code
                == 404
            )
            assert other.delete(f"/api/conversations/{conv['id']}").status_code == 404
            assert (
                other.post(
                    f"/api/conversations/{conv['id']}/truncate", json={"keep": 0}
                ).status_code
                == 404
            )
            fb = other.post("/api/feedback", json={"capture_id": capture, "rating": -1})
            assert fb.status_code == 404
            assert "secret" not in other.get("/api/me/export").text
            # Naming ana's conversation on a chat request does not append to it.
            other.post(
                "/v1/chat/completions",
                headers={"X-OpenClone-Conversation": conv["id"]},
                json={"model": BUNDLED, "max_tokens": 2,
                      "messages": [{"role": "user", "content": "intruder"}]},
            )  # fmt: skip
        assert gus.get("/api/me").json()["tenant"] == "globex"
        assert gus.post("/api/me/erase", json={}).status_code == 200  # touches nobody else
        assert gus.get("/api/me").status_code == 401  # a person erased goes with their key
        mine = ana.get(f"/api/conversations/{conv['id']}").json()
        assert mine["messages"][0]["content"] == "secret plan"
        assert all("intruder" not in m["content"] for m in mine["messages"])
        assert ana.get("/api/me").json()["tenant"] == "acme"
    finally:
        stop_server(server)
