"""Keys, capture into the store and proxy capture, on real server processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import BUNDLED, Server, start_server, stop_server
from openai import AuthenticationError, OpenAI
from sqlalchemy import select

from openclone.config import ModelConfig, load_settings
from openclone.gateway.app import create_app
from openclone.store import open_store
from openclone.store.sealed import open_exchange
from openclone.store.tables import Capture, Tenant, User

pytestmark = pytest.mark.slow

ASK = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4, "temperature": 0}


def _cli(home: Path, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "openclone", *args],
        env={**os.environ, "OPENCLONE_HOME": str(home)},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout


def _captures(home: Path) -> list[tuple[Capture, str, str | None]]:
    store = open_store(None, home)
    try:
        with store.session() as s:
            q = (
                select(Capture, Tenant.name, User.name)
                .join(Tenant, Capture.tenant_id == Tenant.id)
                .outerjoin(User, Capture.user_id == User.id)
                .order_by(Capture.created)
            )
            rows = []
            for c, t, u in s.execute(q):
                # A new home encrypts at rest: read the text as the store's readers do.
                request, response = open_exchange(s, c)
                s.expunge(c)
                c.request, c.response = request, response
                rows.append((c, t, u))
            return rows
    finally:
        store.close()


def test_keys_switch_on_auth_and_captures_carry_the_person(tmp_path: Path) -> None:
    server = start_server(f'default_model = "{BUNDLED}"\n', tmp_path)
    home = tmp_path / "home"
    try:
        anyone = OpenAI(base_url=server.base_url, api_key="sk-anything", max_retries=0)
        anyone.chat.completions.create(model=BUNDLED, **ASK)  # loopback, no key yet: open
        key = _cli(home, "keys", "create", "--tenant", "acme", "--user", "ana").splitlines()[-1]
        assert key.startswith("oc-")
        deadline = time.monotonic() + 10
        with pytest.raises(AuthenticationError):  # once a key exists, keys are required
            while time.monotonic() < deadline:
                anyone.chat.completions.create(model=BUNDLED, **ASK)
                time.sleep(0.5)
        ana = OpenAI(base_url=server.base_url, api_key=key, max_retries=0)
        raw = ana.chat.completions.with_raw_response.create(
            model=BUNDLED, **ASK, extra_headers={"X-OpenClone-Train": "true"}
        )
        capture_id = raw.headers["x-openclone-capture-id"]
        with pytest.raises(AuthenticationError):
            OpenAI(base_url=server.base_url, api_key=key + "x", max_retries=0).models.list()
    finally:
        stop_server(server)  # a clean shutdown flushes the capture queue
    rows = {c.id: (c, tenant, user) for c, tenant, user in _captures(home)}
    cap, tenant, user = rows[capture_id]
    assert (tenant, user, cap.consent, cap.status, cap.model) == ("acme", "ana", True, 200, BUNDLED)
    assert cap.response is not None and cap.response["choices"][0]["message"]["content"]
    assert len(rows) >= 2  # the anonymous request before the key was captured too


def test_a_closed_api_is_proxied_and_captured(server: Server, tmp_path: Path) -> None:
    # The "closed API" is another OpenClone here; any OpenAI-compatible upstream is the same.
    config = f"""
default_model = "gpt-4o"
[[models]]
name = "gpt-4o"
engine = "openai"
params = {{ base_url = "{server.base_url}", model = "{BUNDLED}", api_key = "unused" }}
"""
    proxy = start_server(config, tmp_path)
    try:
        client = OpenAI(base_url=proxy.base_url, api_key="unused", max_retries=0)
        stream = client.chat.completions.create(model="gpt-4o", stream=True, user="carol", **ASK)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    finally:
        stop_server(proxy)
    [(cap, _, user)] = _captures(tmp_path / "home")
    assert (cap.model, user, cap.stream) == ("gpt-4o", "carol", True)
    assert cap.response["choices"][0]["message"]["content"] == text  # assembled from the stream
    assert cap.consent is False  # the tenant default: off until an admin turns it on


def test_a_public_bind_requires_a_key_even_with_none_created(tmp_path: Path) -> None:
    settings = load_settings(
        host="0.0.0.0",
        models=[ModelConfig(name="m", engine="openai", params={"base_url": "http://127.0.0.1:9"})],
    )
    app = create_app(settings)

    async def go() -> httpx.Response:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return await c.get("/v1/models")

    resp = asyncio.run(go())
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "invalid_api_key"
