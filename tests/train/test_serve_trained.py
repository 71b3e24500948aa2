"""The whole loop: a model trained after the server started is served by name at once."""

from __future__ import annotations

import shutil
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
            assert out.model == model
            return out.choices[0].message.content or ""

        with pytest.raises(NotFoundError):
            ask("act")
        # What `openclone train` leaves in the server's home, while the server runs.
        shutil.copytree(trained.home / "models", tmp_path / "home" / "models")

        assert TAUGHT in ask("act")
        assert TAUGHT in ask(f"{BUNDLED}:act")
        assert TAUGHT not in ask(BUNDLED)  # the catalog's llama.cpp engine, untouched
        assert "act" in [m.id for m in client.models.list()]
        with pytest.raises(NotFoundError):
            ask("other-base:act")  # an adapter answers only on the base it was trained on
    finally:
        stop_server(server)
