"""Failover at request time: the first replica chosen refuses connections."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BUNDLED, Server, free_port, start_server, stop_server
from openai import OpenAI

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lone_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # The prober waits 300 s, so only a real request can discover the dead replica.
    config = f"""
health_interval = 300
down_cooldown = 300
[[models]]
name = "{BUNDLED}"
params = {{ n_ctx = 1024, n_parallel = 2 }}
[[models]]
name = "pair"
engine = "openai"
[[models.replicas]]
params = {{ base_url = "http://127.0.0.1:{free_port()}/v1", model = "{BUNDLED}" }}
[[models.replicas]]
params = {{ base_url = "http://127.0.0.1:{{PORT}}/v1", model = "{BUNDLED}" }}
"""
    srv = start_server(config, Path(tmp_path_factory.mktemp("lone")))
    yield srv
    stop_server(srv)


def test_request_fails_over_and_marks_the_replica_down(lone_server: Server) -> None:
    client = OpenAI(base_url=lone_server.base_url, api_key="x", max_retries=0)
    before = lone_server.health()["models"]["pair"]["replicas"]
    assert [r["healthy"] for r in before] == [True, True]  # nothing has found out yet
    stream = client.chat.completions.create(
        model="pair", messages=[{"role": "user", "content": "Hi"}], max_tokens=4, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    out = client.chat.completions.create(
        model="pair", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert out.choices[0].message.content
    dead, live = lone_server.health()["models"]["pair"]["replicas"]
    assert dead["healthy"] is False and "unreachable" in dead["last_error"]
    assert dead["failures"] == 1  # marked down once, then skipped
    assert live["served"] == 2
