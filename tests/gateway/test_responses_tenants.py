"""Stored responses belong to their tenant; a model that cannot embed says so."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from conftest import BUNDLED, start_server, stop_server
from openai import OpenAI

pytestmark = pytest.mark.slow


def _key(home: Path, tenant: str, user: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "openclone", "keys", "create", "--tenant", tenant, "--user", user],
        env={**os.environ, "OPENCLONE_HOME": str(home)}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.splitlines()[-1]


def test_another_tenants_response_is_not_found(tmp_path: Path) -> None:
    home = tmp_path / "home"
    keys = {who: _key(home, *who.split("/")) for who in ("acme/ana", "globex/gus", "acme/bob")}
    config = f"""
default_model = "{BUNDLED}"

[[models]]
name = "{BUNDLED}"
engine = "llamacpp"

[[models]]
name = "no-embeddings"
engine = "llamacpp"
params = {{ embed_n_ctx = 0, n_parallel = 1, n_ctx = 512 }}
"""
    server = start_server(config, tmp_path)
    try:

        def client(who: str) -> OpenAI:
            return OpenAI(base_url=server.base_url, api_key=keys[who], max_retries=0)

        ana, gus, bob = client("acme/ana"), client("globex/gus"), client("acme/bob")
        mine = ana.responses.create(model=BUNDLED, input="secret plan", max_output_tokens=4)
        with pytest.raises(openai.NotFoundError):
            gus.responses.retrieve(mine.id)
        with pytest.raises(openai.NotFoundError):
            gus.responses.input_items.list(mine.id)
        with pytest.raises(openai.NotFoundError):
            gus.responses.delete(mine.id)
        with pytest.raises(openai.NotFoundError):
            gus.responses.create(model=BUNDLED, previous_response_id=mine.id, input="go on")
        # Another person of the same tenant may continue it: responses are the tenant's.
        assert bob.responses.retrieve(mine.id).output_text == mine.output_text
        assert ana.responses.retrieve(mine.id).id == mine.id

        with pytest.raises(openai.BadRequestError) as exc:
            ana.embeddings.create(model="no-embeddings", input="hello")
        assert "does not support embeddings" in str(exc.value)
    finally:
        stop_server(server)
