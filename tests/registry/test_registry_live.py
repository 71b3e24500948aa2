"""The registry live: an alias moved under streaming load; pinned versions hold."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import BUNDLED, start_server, stop_server
from openai import OpenAI


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openclone", *args],
        env={**os.environ, "OPENCLONE_HOME": str(home)}, capture_output=True, text=True,
    )  # fmt: skip


@pytest.mark.slow
def test_promotion_under_streaming_load_fails_nothing_and_pins_hold(tmp_path: Path) -> None:
    config = f"""
default_model = "{BUNDLED}"
[[models]]
name = "{BUNDLED}"
params = {{ n_ctx = 1024, n_parallel = 4 }}
[[models]]
name = "smollm2-next"
params = {{ n_ctx = 1024, n_parallel = 4 }}
"""
    home = tmp_path / "home"
    assert _cli(home, "registry", "register", "bot", "--target", BUNDLED).stdout.strip() == "bot@1"
    assert (
        _cli(home, "registry", "register", "bot", "--target", "smollm2-next").stdout.strip()
        == "bot@2"
    )
    assert _cli(home, "promote", "bot", "1").returncode == 0
    server = start_server(config, tmp_path)
    try:
        client = OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        ask = {
            "messages": [{"role": "user", "content": "Name three colours."}],
            "max_tokens": 12,
            "temperature": 0,
        }
        pinned_before = (
            client.chat.completions.create(model="bot@1", **ask).choices[0].message.content
        )
        seen: list[str] = []
        failures: list[BaseException] = []
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                try:
                    stream = client.chat.completions.create(model="bot", stream=True, **ask)
                    models = {c.model for c in stream}
                    seen.extend(models)
                except BaseException as exc:
                    failures.append(exc)

        threads = [threading.Thread(target=load) for _ in range(6)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        refused = _cli(home, "promote", "bot", "2")
        assert refused.returncode == 1 and "no evaluation" in refused.stderr
        assert _cli(home, "promote", "bot", "2", "--force").returncode == 0
        deadline = time.monotonic() + 20
        while "bot@2" not in seen and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
        stop.set()
        for t in threads:
            t.join()
        assert not failures, failures[:3]
        assert {"bot@1", "bot@2"} <= set(seen)
        pinned_after = (
            client.chat.completions.create(model="bot@1", **ask).choices[0].message.content
        )
        assert pinned_after == pinned_before  # a pinned version answers the same after the move
        assert "bot" in [m.id for m in client.models.list()]
        assert _cli(home, "rollback", "bot").returncode == 0
    finally:
        stop_server(server)
