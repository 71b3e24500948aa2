"""`run_loops = true`: the server runs the loops on their cadence in the background; a
loop that fails is recorded as failed and the server serves on."""

from __future__ import annotations

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


def test_the_server_runs_due_loops_and_survives_a_failing_one(tmp_path: Path) -> None:
    store = open_store(home=tmp_path / "home")
    try:
        set_tenant_policy(store, "acme", actor="admin", consent=True)
        write(store, exchange("How do I reset my password?", tenant="acme"))
    finally:
        store.close()
    env = start_tenant_server(tmp_path, LOOPS)
    try:
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
    finally:
        stop_server(env.server)
    log = env.server.log.read_text()
    assert "loop: support: run 1 finished" in log
    assert "Application shutdown complete" in log  # the loop thread did not hold it up
