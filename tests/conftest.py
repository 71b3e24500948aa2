"""Shared fixtures: every test gets its own OPENCLONE_HOME; a real server on a loopback port;
Debian's Chromium for the browser tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

BUNDLED = "smollm2-135m-instruct"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "openclone-home"
    monkeypatch.setenv("OPENCLONE_HOME", str(home))
    for var in (
        "OPENCLONE_CONFIG",
        "OPENCLONE_MODELS",
        "OPENCLONE_DEFAULT_MODEL",
        "OPENCLONE_DATABASE_URL",
    ):
        monkeypatch.delenv(var, raising=False)
    return home


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str  # http://127.0.0.1:PORT
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def health(self, key: str | None = None) -> dict:  # type: ignore[type-arg]
        """/health as an admin sees it: keyless loopback, or with an admin ``key``."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.get(self.url + "/health", headers=headers, timeout=10).json()


def start_server(
    config_text: str, workdir: Path, port: int | None = None, env: dict[str, str] | None = None
) -> Server:
    port = port or free_port()
    config = workdir / "openclone.toml"
    config.write_text(config_text.replace("{PORT}", str(port)))
    log = workdir / "server.log"
    proc_env = {**os.environ, "OPENCLONE_HOME": str(workdir / "home"), **(env or {})}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "openclone",
                "serve",
                "--config",
                str(config),
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=proc_env,
            cwd=workdir,
        )
    server = Server(url=f"http://127.0.0.1:{port}", process=proc, log=log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(server.url + "/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"server did not start:\n{log.read_text()}")


def stop_server(server: Server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@dataclass
class TenantServer:
    """A real server whose store holds a key for each of its tenants (so keys are required)."""

    server: Server
    home: Path
    keys: dict[str, str]  # tenant -> its person ana's key

    def client(self, tenant: str = "acme") -> OpenAI:
        return OpenAI(base_url=self.server.base_url, api_key=self.keys[tenant], max_retries=0)


def start_tenant_server(
    root: Path, config: str = "", tenants: tuple[str, ...] = ("acme", "globex")
) -> TenantServer:
    """:func:`start_server` on the bundled model with a key for ana in each tenant."""
    from openclone.store import open_store
    from openclone.store.keys import create_key

    store = open_store(home=root / "home")
    try:
        keys = {t: create_key(store, t, "ana")[1] for t in tenants}
    finally:
        store.close()
    server = start_server(f'default_model = "{BUNDLED}"\n{config}', root)
    return TenantServer(server, root / "home", keys)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real OpenClone server for the API tests: the bundled model, plus a model whose
    first replica is an upstream nobody listens on and whose second is this server itself."""
    dead = free_port()
    config = f"""
default_model = "{BUNDLED}"
health_interval = 0.5
down_cooldown = 30

[[models]]
name = "{BUNDLED}"
engine = "llamacpp"
params = {{ n_ctx = 4096 }}

[[models]]
name = "failover"
engine = "openai"
[[models.replicas]]
params = {{ base_url = "http://127.0.0.1:{dead}/v1", model = "{BUNDLED}", connect_timeout = 2 }}
[[models.replicas]]
params = {{ base_url = "http://127.0.0.1:{{PORT}}/v1", model = "{BUNDLED}" }}
"""
    srv = start_server(config, tmp_path_factory.mktemp("server"))
    yield srv
    stop_server(srv)


CHROMIUM = "/usr/bin/chromium"
UI_OUT = Path(__file__).resolve().parents[1] / "test-output" / "ui"  # screenshots
PAGE_TIMEOUT = 60_000  # ms: a page or a quick API call on a busy 2-core machine


def chromium() -> str:
    """Debian's Chromium, installed on first use (CI machines start without it)."""
    if not Path(CHROMIUM).exists():
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"], check=True, env=env
        )
    return CHROMIUM


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium, headless, driven by Playwright: one per test module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium(), headless=True,
                                     args=["--no-sandbox"])  # fmt: skip
        yield launched
        launched.close()


def open_page(browser: Any, width: int = 1200, height: int = 900) -> tuple[Any, list[str]]:
    """A new page that waits up to PAGE_TIMEOUT, and the list its uncaught script errors
    go to (a test asserts it empty)."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(PAGE_TIMEOUT)
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    return page, problems
