"""The whole loop: a model trained after the server started is served by name at once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import BUNDLED, start_server, stop_server
from openai import NotFoundError, OpenAI

from train.train_helpers import QUESTION, TAUGHT, Trained

pytestmark = pytest.mark.slow


def test_running_server_serves_a_new_trained_model_by_name(
    trained: Trained, tmp_path: Path
) -> None:
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
            # A registered run answers as its pinned version, as OpenAI names a snapshot.
            assert out.model in (model, f"{model}@1")
            return out.choices[0].message.content or ""

        with pytest.raises(NotFoundError):
            ask("act")
        # What `openclone train` leaves in the server's home, while the server runs: here
        # two runs on one base (the second reuses the first one's adapter files).
        models = tmp_path / "home" / "models"
        shutil.copytree(trained.home / "models", models)
        record = json.loads((models / "act" / "record.json").read_text())
        (models / "act2").mkdir()
        (models / "act2" / "record.json").write_text(json.dumps({**record, "name": "act2"}))
        # Runs trained before training registered its results join the registry by adoption.
        adopt = subprocess.run(
            [
                sys.executable,
                "-m",
                "openclone",
                "registry",
                "adopt",
                "-c",
                str(tmp_path / "openclone.toml"),
            ],
            env={**os.environ, "OPENCLONE_HOME": str(tmp_path / "home")},
            capture_output=True,
            text=True,
            check=True,
        )
        assert set(adopt.stdout.split()) == {"act@1", "act2@1"}
        listed = _wait_listed(client, {"act", "act@1", "act2", "act2@1"})
        assert {"act", "act@1", "act2", "act2@1"} <= listed  # before anyone asked for them

        # Two first requests at once for two runs on one base: both answered by the catalog's
        # own llama.cpp engine for that GGUF (the runs carry GGUF LoRAs), no new engine.
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(ask, ["act", "act2"]))
        assert all(TAUGHT in a for a in answers)
        log = server.log.read_text()
        assert "on a new" not in log and log.count(f"on the engine of {BUNDLED}") == 2

        assert TAUGHT in ask("act")
        assert TAUGHT in ask(f"{BUNDLED}:act")
        assert TAUGHT not in ask(BUNDLED)  # the same engine, without an adapter
        assert "act" in [m.id for m in client.models.list()]
        with pytest.raises(NotFoundError):
            ask("other-base:act")  # an adapter answers only on the base it was trained on
    finally:
        stop_server(server)


def _wait_listed(client: OpenAI, names: set[str]) -> set[str]:
    """The model list once the registry refresh (every second) has seen ``names``."""
    deadline = time.monotonic() + 15
    while True:
        listed = {m.id for m in client.models.list()}
        if names <= listed or time.monotonic() > deadline:
            return listed
        time.sleep(0.2)
