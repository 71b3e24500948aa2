"""Archiving a registry version unloads its adapter from a running server: its names answer
404 in OpenAI's shape from then on, never the base's or another adapter's output."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import BUNDLED, Server, start_server, stop_server
from openai import NotFoundError, OpenAI

from train.train_helpers import QUESTION, TAUGHT, Trained

pytestmark = pytest.mark.slow


def _adapters(server: Server) -> dict[str, int]:
    """The catalog engine's adapter counts (known, loaded) from /health."""
    detail = server.health()["models"][BUNDLED]["replicas"][0]["detail"]
    return dict(detail.get("adapters") or {})


def _wait(what: str, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 20  # the registry refresh runs every second
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_archiving_the_last_version_of_a_run_unloads_its_adapter(
    trained: Trained, tmp_path: Path
) -> None:
    from openclone.registry.trained import register_trained
    from openclone.store import open_store
    from openclone.store.trained import get_trained

    home = tmp_path / "home"
    shutil.copytree(trained.home / "models", home / "models")
    store = open_store(home=home)
    try:
        # The run serves only as a candidate version of "support" (no RUN@1 of its own).
        version = register_trained(store, get_trained("act", home), "support")
    finally:
        store.close()
    assert version.pinned == "support@1"
    server = start_server(f'default_model = "{BUNDLED}"\n', tmp_path)
    try:
        client = OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)

        def ask(model: str) -> str:
            out = client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": QUESTION}],
                max_tokens=24,
                temperature=0,
            )
            return out.choices[0].message.content or ""

        assert TAUGHT in ask("support@1")
        assert TAUGHT in ask("act")
        assert _adapters(server)["loaded"] == 1
        subprocess.run(
            [sys.executable, "-m", "openclone", "registry", "archive", "support", "1",
             "-c", str(tmp_path / "openclone.toml")],
            env={**os.environ, "OPENCLONE_HOME": str(home)},
            capture_output=True, text=True, check=True,
        )  # fmt: skip

        def gone(model: str) -> bool:
            try:
                ask(model)
            except NotFoundError as exc:
                assert (exc.code, exc.param) == ("model_not_found", "model"), exc
                return True
            return False

        _wait("support@1 to be archived", lambda: gone("support@1"))
        for name in ("act", f"{BUNDLED}:act"):
            assert gone(name), name  # not the base's answer under the run's name
        _wait("the adapter to be freed", lambda: _adapters(server).get("loaded") == 0)
        assert _adapters(server)["known"] == 0
        assert TAUGHT not in ask(BUNDLED)  # the base serves on
        assert "support@1" not in {m.id for m in client.models.list()}
    finally:
        stop_server(server)
