"""PostgreSQL stopped under load: the gateway keeps answering, captures it cannot store are
counted (never silently lost), and capturing resumes when the database returns."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import BUNDLED, Server, start_server, stop_server
from pg import PgServer, start_postgres

pytestmark = pytest.mark.slow

_DB = "openclone_outage"


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    server = start_postgres()
    try:
        server.execute(f"CREATE DATABASE {_DB}")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def served(pg: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    config = f"""
default_model = "{BUNDLED}"
database_url = "{pg.url(_DB)}"

[[models]]
name = "{BUNDLED}"
engine = "llamacpp"
params = {{ n_ctx = 1024 }}
"""
    srv = start_server(config, tmp_path_factory.mktemp("outage"))
    yield srv
    stop_server(srv)


def _chat(server: Server, text: str) -> int:
    body = {
        "model": BUNDLED,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 2,
        "temperature": 0,
    }
    return httpx.post(server.base_url + "/chat/completions", json=body, timeout=60).status_code


def _metric(server: Server, name: str) -> float:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    found = re.search(rf"^{name}(?:_total)?(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M)
    assert found, f"{name} missing from /metrics"
    return float(found.group(1))


def _stored(pg: PgServer, marker: str) -> int:
    rows = pg.execute(
        f"SELECT count(*) FROM captures WHERE CAST(request AS TEXT) LIKE '%{marker}%'", _DB
    )
    return int(str(rows[0][0]))


def _settle(server: Server, sent: int, deadline_s: float = 60.0) -> tuple[float, float]:
    """Wait until every capture sent is written or counted as lost; (written, lost)."""
    deadline = time.monotonic() + deadline_s
    while True:
        written = _metric(server, "openclone_captures_written")
        lost = _metric(server, "openclone_captures_failed") + _metric(
            server, "openclone_captures_dropped"
        )
        if written + lost >= sent or time.monotonic() > deadline:
            return written, lost
        time.sleep(0.5)


def test_the_gateway_serves_through_a_database_outage_and_recovers(
    served: Server, pg: PgServer, tmp_path: Path
) -> None:
    assert [_chat(served, f"before-{i}") for i in range(3)] == [200] * 3
    written, lost = _settle(served, 3)
    assert (written, lost) == (3, 0)
    assert _stored(pg, "before-") == 3

    pg.halt()
    try:
        with ThreadPoolExecutor(4) as pool:
            during = list(pool.map(lambda i: _chat(served, f"during-{i}"), range(8)))
        assert during == [200] * 8  # the answers never waited on the database
        health = httpx.get(served.url + "/health", timeout=10)
        assert health.status_code == 200 and health.json()["status"] in ("ok", "degraded")
        written, lost = _settle(served, 11)
    finally:
        pg.start()
    # Each capture taken while the database was down is either written after all (its
    # retries outlasted the outage) or counted as lost: none is unaccounted for.
    assert written + lost == 11

    assert [_chat(served, f"after-{i}") for i in range(3)] == [200] * 3
    deadline = time.monotonic() + 60
    while _stored(pg, "after-") < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _stored(pg, "after-") == 3  # capturing came back with the database
    assert _stored(pg, "before-") == 3  # and nothing stored before was touched
    assert _stored(pg, "during-") == written - 3
