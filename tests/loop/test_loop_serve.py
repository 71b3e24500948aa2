"""`run_loops = true`: the server runs the loops on their cadence in a child process
(`openclone loop start`), never in itself; a loop that fails, or a child that dies, does not
take the server down, and the server's shutdown leaves no child behind."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

from conftest import start_tenant_server, stop_server
from store.helpers import exchange, write

from openclone.loop.state import RunInfo, list_runs
from openclone.store import open_store
from openclone.store.accounts import set_tenant_policy

LOOPS = """
run_loops = true

[[loops]]
name = "support"
model = "support"
tenant = "acme"
teacher = "smollm2-135m-instruct"

[[loops]]
name = "broken"
model = "broken"
tenant = "nobody"
teacher = "smollm2-135m-instruct"
"""


def _runs(home: Path, loop: str) -> list[RunInfo]:
    store = open_store(home=home)
    try:
        return list_runs(store, loop)
    finally:
        store.close()


def _children(log: Path, count: int) -> list[int]:
    """The pids of the loop processes the server started, once it started ``count``."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pids = [int(p) for p in re.findall(r"the loops process started \(pid (\d+)\)",
                                           log.read_text())]  # fmt: skip
        if len(pids) >= count:
            return pids
        time.sleep(0.2)
    raise AssertionError(f"{count} loop process(es) not started:\n{log.read_text()}")


def _exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def test_the_server_runs_due_loops_and_survives_a_failing_one(tmp_path: Path) -> None:
    store = open_store(home=tmp_path / "home")
    try:
        set_tenant_policy(store, "acme", actor="admin", consent=True)
        write(store, exchange("How do I reset my password?", tenant="acme"))
    finally:
        store.close()
    env = start_tenant_server(tmp_path, LOOPS)
    try:
        (child,) = _children(env.server.log, 1)
        assert b"loop\x00start" in Path(f"/proc/{child}/cmdline").read_bytes()
        assert os.getpid() != child != env.server.process.pid
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            done = _runs(env.home, "support")
            if done and done[0].status == "finished":
                break
            time.sleep(0.5)
        (run,) = _runs(env.home, "support")
        assert (run.status, run.action) == ("finished", "skip")
        assert run.decision is not None and "not enough data (1 new consented" in run.decision
        (broken,) = _runs(env.home, "broken")
        assert broken.status == "failed" and "no tenant named 'nobody'" in (broken.error or "")
        assert env.server.health()["status"] == "ok"  # the failure did not take it down
        answer = env.client().chat.completions.create(
            model="smollm2-135m-instruct", messages=[{"role": "user", "content": "Hi"}],
            max_tokens=4,
        )  # fmt: skip
        assert answer.choices[0].message.content is not None
        os.kill(child, signal.SIGKILL)  # a crash of the loops: the server starts them again
        _, again = _children(env.server.log, 2)
        assert env.server.health()["status"] == "ok"
    finally:
        stop_server(env.server)
    log = env.server.log.read_text()
    assert "loop: support: run 1 finished" in log
    assert "the loops process was killed by SIGKILL" in log
    assert "Application shutdown complete" in log
    assert not _exists(child) and not _exists(again)  # the shutdown left no child
