"""Every store test runs twice: on SQLite in the test's home, and on a real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg import PgServer, start_postgres

from openclone.store import Store, open_store


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgServer]:
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'home' / 'openclone.db'}"
        return
    pg: PgServer = request.getfixturevalue("postgres")
    name = "t_" + uuid.uuid4().hex[:12]
    pg.psql(f"CREATE DATABASE {name}")
    yield pg.url(name)
    pg.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Iterator[Store]:
    (tmp_path / "home").mkdir(exist_ok=True)
    s = open_store(store_url)
    yield s
    s.close()
