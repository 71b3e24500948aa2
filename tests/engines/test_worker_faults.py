"""Fault injection on engine worker processes: real servers, real workers, real signals.

A worker that dies (SIGKILL, SIGSEGV, a crash on start) must cost only its own replica:
the gateway keeps its PID and answers, requests that had not started streaming succeed on
the other replica, a started stream ends with an error event, the worker comes back, and
stopping the server leaves no worker behind. A request that crashes every worker it meets
takes down two, not all of them; a worker that hangs is killed and replaced.
"""

from __future__ import annotations

import os
import signal
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from conftest import BUNDLED, Server, start_server, stop_server
from openai import OpenAI

pytestmark = pytest.mark.slow

ASK = [{"role": "user", "content": "Name three colours."}]


def _workers(server: Server, model: str) -> list[dict[str, Any]]:
    return [r["worker"] for r in server.health()["models"][model]["replicas"]]


def _wait(what: str, check: Any, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie has already died


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    config = f"""
default_model = "{BUNDLED}"
health_interval = 0.3
down_cooldown = 0.5
[[models]]
name = "{BUNDLED}"
params = {{ n_ctx = 1024, n_parallel = 4, n_threads = 1 }}
replicas = [{{}}, {{}}]
"""
    srv = start_server(config, Path(tmp_path_factory.mktemp("pair")))
    yield srv
    stop_server(srv)


def _ready_pids(server: Server) -> list[int] | None:
    workers = _workers(server, BUNDLED)
    if all(w["state"] == "ready" and w["pid"] for w in workers):
        replicas = server.health()["models"][BUNDLED]["replicas"]
        if all(r["healthy"] for r in replicas):
            return [int(w["pid"]) for w in workers]
    return None


def test_the_gateway_never_loads_native_model_code(pair: Server) -> None:
    (a, b) = _wait("two ready workers", lambda: _ready_pids(pair))
    assert "libllama" not in _maps(pair.process.pid)
    assert "libggml" not in _maps(pair.process.pid)
    assert "libllama" in _maps(a) and "libllama" in _maps(b)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV], ids=["SIGKILL", "SIGSEGV"])
def test_a_worker_killed_under_load_costs_no_unstarted_request(
    pair: Server, sig: signal.Signals
) -> None:
    gateway = pair.process.pid
    old = _wait("two ready workers", lambda: _ready_pids(pair))
    victim = old[0]
    client = OpenAI(base_url=pair.base_url, api_key="x", max_retries=0, timeout=180)
    stop = threading.Event()
    outcomes: list[str] = []

    def one(i: int) -> None:
        while not stop.is_set():
            out = client.chat.completions.create(
                model=BUNDLED, messages=ASK, max_tokens=24, temperature=0.7, seed=i
            )
            outcomes.append(out.choices[0].finish_reason)

    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(one, i) for i in range(6)]
        _wait("requests to flow", lambda: len(outcomes) >= 6)
        os.kill(victim, sig)
        _wait("the dead worker", lambda: not _alive(victim), timeout=30)
        served_before = len(outcomes)
        _wait("requests served after the kill", lambda: len(outcomes) >= served_before + 12)
        stop.set()
        for f in futures:
            f.result()  # any request that failed raises here

    assert pair.process.poll() is None and pair.process.pid == gateway
    new = _wait("the worker to come back", lambda: _ready_pids(pair))
    assert victim not in new and old[1] in new
    (back, _) = _workers(pair, BUNDLED)
    assert back["restarts"] >= 1
    assert sig.name in back["last_exit"]["reason"]
    metrics = httpx.get(pair.url + "/metrics", timeout=10).text
    assert f'openclone_engine_worker_restarts_total{{model="{BUNDLED}",replica="{BUNDLED}#0"}}' in (
        metrics
    )
    assert sig.name in metrics
    # and the restarted replica serves again
    ok = client.chat.completions.create(model=BUNDLED, messages=ASK, max_tokens=4)
    assert ok.choices[0].message.content


@pytest.fixture()
def single(tmp_path: Path) -> Iterator[Server]:
    config = f"""
health_interval = 0.3
down_cooldown = 0.5
[[models]]
name = "{BUNDLED}"
params = {{ n_ctx = 4096, n_parallel = 2 }}
"""
    srv = start_server(config, tmp_path)
    yield srv
    stop_server(srv)


def test_a_stream_under_way_ends_with_an_error_and_the_next_request_gets_a_503(
    single: Server,
) -> None:
    (pid,) = _wait(
        "a ready worker", lambda: [w["pid"] for w in _workers(single, BUNDLED) if w["pid"]]
    )
    client = OpenAI(base_url=single.base_url, api_key="x", max_retries=0, timeout=60)
    stream = client.chat.completions.create(
        model=BUNDLED,
        messages=[{"role": "user", "content": "Write a very long story about the sea."}],
        max_tokens=3000,
        stream=True,
    )
    chunks = iter(stream)
    for _ in range(3):
        next(chunks)
    os.kill(pid, signal.SIGSEGV)
    with pytest.raises(openai.APIError, match="SIGSEGV"):
        for _ in chunks:
            pass
    # While it restarts (or after), a request never hangs: a 503 with Retry-After, or a reply.
    r = httpx.post(
        single.base_url + "/chat/completions",
        json={"model": BUNDLED, "messages": ASK, "max_tokens": 4},
        timeout=60,
    )
    if r.status_code == 503:
        assert r.json()["error"]["code"] == "engine_unavailable"
        assert int(r.headers["retry-after"]) >= 1
    else:
        assert r.status_code == 200, r.text
    _wait("the replica to come back", lambda: single.health()["status"] == "ok")
    ok = client.chat.completions.create(model=BUNDLED, messages=ASK, max_tokens=4)
    assert ok.choices[0].message.content


def _crashing_plugin(where: Path) -> Path:
    """A third-party engine package, installed the way pip would lay it out, whose engine
    dies of a real SIGSEGV while it loads (a stub: no real model crashes on demand)."""
    where.mkdir()
    (where / "crashing_engine.py").write_text(
        textwrap.dedent(
            """
            import ctypes

            class CrashingEngine:
                runs_native_code = True

                @classmethod
                def from_config(cls, model_name, params):
                    ctypes.string_at(0)  # reads address 0: SIGSEGV
            """
        )
    )
    return _installed(where, "crashing", "crashing_engine:CrashingEngine")


def _installed(where: Path, engine: str, target: str) -> Path:
    """``where`` laid out as pip installs a package: its entry point names ``engine``."""
    module = target.partition(":")[0]
    info = where / f"{module}-1.0.dist-info"
    info.mkdir()
    name = module.replace("_", "-")
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[openclone.engines]\n{engine} = {target}\n")
    return where


def test_a_worker_that_crashes_on_start_is_retried_with_backoff_and_reported(
    tmp_path: Path,
) -> None:
    plugin = _crashing_plugin(tmp_path / "plugin")
    config = f"""
health_interval = 0.3
[[models]]
name = "{BUNDLED}"
params = {{ n_ctx = 1024, n_parallel = 1 }}
[[models]]
name = "doomed"
engine = "crashing"
"""
    server = start_server(config, tmp_path, env={"PYTHONPATH": str(plugin)})
    try:
        gateway = server.process.pid
        # The gateway came up and serves the healthy model beside the broken one.
        ok = httpx.post(
            server.base_url + "/chat/completions",
            json={"model": BUNDLED, "messages": ASK, "max_tokens": 4},
            timeout=60,
        )
        assert ok.status_code == 200, ok.text
        r = httpx.post(
            server.base_url + "/chat/completions",
            json={"model": "doomed", "messages": ASK, "max_tokens": 4},
            timeout=30,
        )
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "engine_unavailable"
        assert int(r.headers["retry-after"]) >= 1
        worker = _wait("two failed restarts", lambda: _restarted(server, 2))
        assert "SIGSEGV" in worker["last_exit"]["reason"]
        # Backoff doubles (0.5, 1, 2, 4 s ...): a few seconds see a handful of tries, not a spin.
        time.sleep(3)
        assert _workers(server, "doomed")[0]["restarts"] <= 6
        assert server.health()["status"] == "degraded"
        assert server.process.poll() is None and server.process.pid == gateway
    finally:
        stop_server(server)


def _restarted(server: Server, times: int) -> dict[str, Any] | None:
    (worker,) = _workers(server, "doomed")
    return worker if worker["restarts"] >= times else None


def test_stopping_the_server_stops_its_workers(tmp_path: Path) -> None:
    config = f"""
[[models]]
name = "{BUNDLED}"
params = {{ n_ctx = 1024, n_parallel = 1 }}
replicas = [{{}}, {{}}]
"""
    server = start_server(config, tmp_path)
    pids = [int(w["pid"]) for w in _workers(server, BUNDLED)]
    assert all(_alive(p) for p in pids)
    stop_server(server)  # SIGTERM: a graceful shutdown
    _wait("no orphaned worker", lambda: not any(_alive(p) for p in pids), timeout=30)


def test_a_killed_gateway_takes_its_workers_with_it(tmp_path: Path) -> None:
    config = f"""
[[models]]
name = "{BUNDLED}"
params = {{ n_ctx = 1024, n_parallel = 1 }}
"""
    server = start_server(config, tmp_path)
    (pid,) = [int(w["pid"]) for w in _workers(server, BUNDLED)]
    server.process.kill()
    server.process.wait()
    _wait("no orphaned worker", lambda: not _alive(pid), timeout=30)


def test_a_hung_worker_is_killed_and_replaced(tmp_path: Path) -> None:
    # SIGSTOP: a worker that neither dies nor answers, as a deadlock would leave it.
    config = f"""
health_interval = 0.3
[[models]]
name = "{BUNDLED}"
params = {{ n_ctx = 1024, n_parallel = 1, worker_hang_timeout = 5 }}
"""
    server = start_server(config, tmp_path)
    try:
        gateway = server.process.pid
        (worker,) = _workers(server, BUNDLED)
        hung = int(worker["pid"])
        os.kill(hung, signal.SIGSTOP)
        # The request it holds fails within the watchdog's time (it was never started),
        # instead of waiting for an answer that would never come.
        r = httpx.post(
            server.base_url + "/chat/completions",
            json={"model": BUNDLED, "messages": ASK, "max_tokens": 4},
            timeout=120,
        )
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "engine_unavailable"
        assert "hung" in r.json()["error"]["message"]
        assert not _alive(hung)
        back = _wait(
            "a new worker",
            lambda: next((w for w in _workers(server, BUNDLED)
                          if w["state"] == "ready" and w["pid"] not in (None, hung)), None),
        )  # fmt: skip
        assert "answered nothing" in back["last_exit"]["reason"]
        ok = _wait(
            "an answer from the new worker",
            lambda: (
                httpx.post(
                    server.base_url + "/chat/completions",
                    json={"model": BUNDLED, "messages": ASK, "max_tokens": 4},
                    timeout=60,
                ).status_code
                == 200
            ),
        )
        assert ok and server.process.pid == gateway
    finally:
        stop_server(server)


def _fragile_plugin(where: Path) -> Path:
    """An engine package whose engine dies of a real SIGSEGV on any prompt that says
    POISON and answers everything else (a stub: no real model crashes on demand)."""
    where.mkdir()
    (where / "fragile_engine.py").write_text(
        textwrap.dedent(
            """
            import ctypes
            from openclone.engines.base import Capabilities
            from openclone.schema import ChatCompletion

            class FragileEngine:
                runs_native_code = True
                capabilities = Capabilities()

                @classmethod
                def from_config(cls, model_name, params):
                    return cls()

                async def chat(self, req):
                    if "POISON" in str(req.messages[-1].content):
                        ctypes.string_at(0)  # reads address 0: SIGSEGV
                    return ChatCompletion.model_validate({
                        "id": "x", "object": "chat.completion", "created": 0, "model": req.model,
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": "fine"}}]})

                async def health(self):
                    return True

                def describe(self):
                    return {"engine": "fragile"}

                async def close(self):
                    pass
            """
        )
    )
    return _installed(where, "fragile", "fragile_engine:FragileEngine")


def test_a_request_that_crashes_workers_takes_down_two_replicas_not_all(tmp_path: Path) -> None:
    plugin = _fragile_plugin(tmp_path / "plugin")
    config = """
health_interval = 0.3
down_cooldown = 0.5
[[models]]
name = "fragile"
engine = "fragile"
replicas = [{}, {}, {}]
"""
    server = start_server(config, tmp_path, env={"PYTHONPATH": str(plugin)})
    try:
        gateway = server.process.pid
        before = [int(w["pid"]) for w in _workers(server, "fragile")]

        def ask(text: str) -> httpx.Response:
            return httpx.post(
                server.base_url + "/chat/completions",
                json={"model": "fragile", "messages": [{"role": "user", "content": text}]},
                timeout=60,
            )

        assert ask("hello").status_code == 200
        r = ask("POISON")
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "engine_crashed"
        assert "died twice" in r.json()["error"]["message"]

        def settled() -> list[dict[str, Any]] | None:
            workers = _workers(server, "fragile")
            return workers if all(w["state"] == "ready" for w in workers) else None

        workers = _wait("the two crashed workers back", settled)
        untouched = [w for w in workers if w["restarts"] == 0]
        assert len(untouched) == 1 and int(untouched[0]["pid"]) in before
        crashed = [w for w in workers if w["restarts"] == 1]
        assert len(crashed) == 2 and all("SIGSEGV" in w["last_exit"]["reason"] for w in crashed)
        assert _wait("an answer", lambda: ask("hello again").status_code == 200)
        assert server.process.poll() is None and server.process.pid == gateway
    finally:
        stop_server(server)
