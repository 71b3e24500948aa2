"""Every store test runs twice: on SQLite in the test's home, and on a real PostgreSQL.

The PostgreSQL server is started once per session (see ``tests/pg.py``) with one database
migrated to head; each test starts with every table of it emptied (``TRUNCATE``, ~20 ms,
where a ``CREATE DATABASE`` plus migrations costs ~0.5 s). Tests of the migrations get a
database of their own with no tables. SQLite tests copy a migrated file into their home.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pg import PgServer, start_postgres

from openclone.store import Store, open_store

BACKENDS = ["sqlite", "postgresql"]
_SHARED = "openclone_test"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgServer]:
    server = start_postgres()
    try:
        server.execute(f"CREATE DATABASE {_SHARED}")
        open_store(server.url(_SHARED)).close()
        yield server
    finally:
        server.stop()


def _emptied(pg: PgServer, database: str) -> str:
    # A connection a failed test left behind must not hold a lock TRUNCATE waits for.
    pg.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    )
    tables = [
        str(name)
        for (name,) in pg.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version'",
            database,
        )
    ]
    pg.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE", database)
    return pg.url(database)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("sqlite-template")
    open_store(None, home).close()  # closing the last connection folds the WAL in
    return home / "openclone.db"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def home(_isolated_home: Path) -> Path:
    """OPENCLONE_HOME of this test, where the SQLite store lives."""
    _isolated_home.mkdir(parents=True, exist_ok=True)
    return _isolated_home


@pytest.fixture
def store_url(backend: str, home: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A database at the newest schema, empty of rows."""
    if backend == "sqlite":
        shutil.copyfile(request.getfixturevalue("sqlite_template"), home / "openclone.db")
        yield f"sqlite:///{home / 'openclone.db'}"
        return
    yield _emptied(request.getfixturevalue("postgres"), _SHARED)


@pytest.fixture
def empty_url(backend: str, home: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A database with no tables at all (for the migrations themselves)."""
    if backend == "sqlite":
        yield f"sqlite:///{home / 'openclone.db'}"
        return
    pg: PgServer = request.getfixturevalue("postgres")
    name = "t_" + uuid.uuid4().hex[:12]
    pg.execute(f"CREATE DATABASE {name}")
    yield pg.url(name)
    pg.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    yield s
    s.close()


@pytest.fixture
def database_files(
    store: Store, home: Path, request: pytest.FixtureRequest
) -> Callable[[], list[Path]]:
    """The files that hold the store's data, to search for text that must be gone.

    SQLite: every file under OPENCLONE_HOME (database, WAL, shared memory, lock, exports
    written there). PostgreSQL: the database's directory (tables, indexes, TOAST, free
    space maps) after a CHECKPOINT writes the buffers out; not the shared WAL segments,
    which hold every change until they are recycled (see ``Store.compact``).
    """

    def files() -> list[Path]:
        if store.is_sqlite:
            return [p for p in home.rglob("*") if p.is_file()]
        pg: PgServer = request.getfixturevalue("postgres")
        database = store.engine.url.database
        assert database
        pg.execute("CHECKPOINT")
        return [p for p in pg.database_dir(database).iterdir() if p.is_file()]

    return files
