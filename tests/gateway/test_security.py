"""Issue 19 on real servers: fail-closed auth (F6), CSRF and DNS rebinding (F5), a person's
consent and conversations (item 6), transport and headers (item 8)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import BUNDLED, free_port, start_server, stop_server
from sqlalchemy import select

from openclone.config import ModelConfig, load_settings
from openclone.errors import ConfigError
from openclone.gateway.app import create_app
from openclone.store import open_store
from openclone.store.accounts import Principal
from openclone.store.conversations import get_conversation
from openclone.store.tables import Capture

pytestmark = pytest.mark.slow

# No model loads: an upstream nobody listens on is enough for everything but the chat.
DEAD_UPSTREAM = """
[[models]]
name = "m"
engine = "openai"
params = { base_url = "http://127.0.0.1:9/v1", connect_timeout = 1 }
"""


def _cli(home: Path, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "openclone", *args],
        env={**os.environ, "OPENCLONE_HOME": str(home)},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.splitlines()[-1]


def _error(resp: httpx.Response) -> dict[str, object]:
    body = resp.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return dict(body["error"])


def test_the_keyless_loopback_server_refuses_other_sites(tmp_path: Path) -> None:
    server = start_server('metrics_token = "scrape-me"\n' + DEAD_UPSTREAM, tmp_path)
    try:
        web = httpx.Client(base_url=server.url, timeout=30)
        # First run, no key anywhere: the local user chats without ceremony.
        assert web.get("/api/me").json()["admin"] is True
        conv = web.post("/api/conversations", json={"title": "keep me"}).json()

        # F5: another site's form post to the erase button is refused, nothing is erased.
        evil = web.post(
            "/api/me/erase",
            headers={"Origin": "https://evil.example"},
            content=b"confirm=1",
        )
        assert evil.status_code == 403 and _error(evil)["code"] == "cross_origin"
        form = web.post(
            "/api/me/erase",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            content=b"confirm=1",
        )
        assert form.status_code == 400
        assert [c["id"] for c in web.get("/api/conversations").json()] == [conv["id"]]

        # F5: DNS rebinding, attacker.example resolving to 127.0.0.1.
        rebound = web.get("/api/me", headers={"Host": "attacker.example"})
        assert rebound.status_code == 400 and _error(rebound)["code"] == "invalid_host"
        assert web.get("/health", headers={"Host": "attacker.example:8000"}).status_code == 400

        # The page's own request (same origin, JSON) still works.
        mine = web.post("/api/me/erase", json={}, headers={"Origin": server.url})
        assert mine.status_code == 200 and mine.json()["erased"] == {"conversations": 1}

        # Item 8: headers, no CDN docs, metrics behind the token.
        for path in ("/", "/v1/models", "/health", "/api/me"):
            h = web.get(path).headers
            assert "frame-ancestors 'none'" in h["content-security-policy"], path
            assert h["x-content-type-options"] == "nosniff"
            assert h["referrer-policy"] == "no-referrer"
        assert web.get("/docs").status_code == 404 and web.get("/redoc").status_code == 404
        assert web.get("/openapi.json").status_code == 200
        assert web.get("/metrics").status_code == 401
        scraped = web.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert scraped.status_code == 200 and "openclone" in scraped.text
    finally:
        stop_server(server)


def test_auth_fails_closed_once_a_key_was_ever_created(tmp_path: Path) -> None:
    server = start_server(DEAD_UPSTREAM, tmp_path)
    home = tmp_path / "home"
    try:
        anon = httpx.Client(base_url=server.url, timeout=30)
        assert anon.get("/v1/models").status_code == 200  # keyless first run
        admin = _cli(home, "keys", "create", "--tenant", "ops", "--admin")
        user = _cli(home, "keys", "create", "--tenant", "acme", "--user", "ana")

        def as_(key: str) -> httpx.Client:
            return httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
            )

        # The key another process created is seen by the next request, not seconds later.
        assert anon.get("/v1/models").status_code == 401
        assert as_(user).get("/v1/models").status_code == 200  # now cached by the gateway

        # Public /health: status only; the detail (paths, upstream URLs) is for admins.
        for public in (anon.get("/health").json(), as_(user).get("/health").json()):
            assert list(public) == ["status"] and public["status"] in ("ok", "degraded")
        detail = as_(admin).get("/health").json()
        assert detail["models"]["m"]["replicas"] and "version" in detail

        # F6: a revoked key stops at once, and revoking every key never reopens the server.
        _cli(home, "keys", "revoke", user[:10])
        refused = as_(user).get("/v1/models")
        assert refused.status_code == 401 and _error(refused)["code"] == "invalid_api_key"
        _cli(home, "keys", "revoke", admin[:10])
        assert as_(admin).get("/v1/models").status_code == 401
        assert anon.get("/v1/models").status_code == 401
        assert anon.get("/api/me").status_code == 401
    finally:
        stop_server(server)


def _app_status(**settings: object) -> int:
    app = create_app(
        load_settings(models=[ModelConfig(name="m", engine="openai", params={})], **settings)
    )

    async def go() -> int:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
                return (await c.get("/v1/models")).status_code

    return asyncio.run(go())


def test_keyless_is_an_explicit_loopback_setting() -> None:
    assert _app_status(auth="keys") == 401  # loopback, no key ever made: still closed
    assert _app_status(auth="none") == 200
    with pytest.raises(ConfigError, match="loopback"):
        load_settings(host="0.0.0.0", auth="none")


def test_a_shared_key_can_neither_override_an_opt_out_nor_write_into_her_chat(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    ana_key = _cli(home, "keys", "create", "--tenant", "acme", "--user", "ana")
    app_key = _cli(home, "keys", "create", "--tenant", "acme")  # one key for a whole app
    server = start_server(
        f'default_model = "{BUNDLED}"\n[[models]]\nname = "{BUNDLED}"\n'
        "params = { n_ctx = 512 }\n",
        tmp_path,
    )
    try:
        ana = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {ana_key}"}, timeout=300
        )
        assert ana.put("/api/me/consent", json={"train": False}).json() == {"train": False}
        conv = ana.post("/api/conversations", json={"title": "mine"}).json()
        reply = httpx.post(
            server.url + "/v1/chat/completions",
            headers={
                "Authorization": f"Bearer {app_key}",
                "X-OpenClone-Train": "true",
                "X-OpenClone-Conversation": conv["id"],
            },
            json={"model": BUNDLED, "user": "ana", "max_tokens": 2,
                  "messages": [{"role": "user", "content": "planted words"}]},
            timeout=300,
        )  # fmt: skip
        assert reply.status_code == 200
        capture_id = reply.headers["x-openclone-capture-id"]
    finally:
        stop_server(server)  # a clean shutdown flushes the capture queue
    store = open_store(None, home)
    try:
        with store.session() as s:
            cap = s.scalar(select(Capture).where(Capture.id == capture_id))
        assert cap is not None and cap.consent is False  # her "no" beat the app's "true"
        assert cap.conversation_id is None
        her = get_conversation(store, Principal("acme", "ana", None, "user"), conv["id"])
        assert her.messages == []
    finally:
        store.close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_serve_speaks_tls(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    (tmp_path / "openclone.toml").write_text(DEAD_UPSTREAM)
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "openclone", "serve", "--config", str(tmp_path / "openclone.toml"),
         "--port", str(port), "--tls-cert", str(cert), "--tls-key", str(key)],
        env={**os.environ, "OPENCLONE_HOME": str(tmp_path / "home")},
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    trust = ssl.create_default_context(cafile=str(cert))
    try:
        status = None
        for _ in range(300):
            if proc.poll() is not None:
                break
            try:
                resp = httpx.get(f"https://127.0.0.1:{port}/health", verify=trust, timeout=1)
                status = resp.json()["status"]
                break
            except httpx.HTTPError:
                time.sleep(0.2)  # still starting
        assert status is not None, (tmp_path / "server.log").read_text()
        with pytest.raises(httpx.HTTPError):  # plain HTTP is not served on that port
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).raise_for_status()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
