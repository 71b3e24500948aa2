"""Opening the store: the engine, per-backend settings, migrations to head."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from openclone.errors import ConfigError

__all__ = ["Store", "open_store", "sqlite_url"]

log = logging.getLogger("openclone.store")
_MIGRATIONS = Path(__file__).with_name("migrations")


def sqlite_url(home: Path) -> str:
    return f"sqlite:///{home / 'openclone.db'}"


class Store:
    """One database. Thread-safe: every call opens its own short session."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self.auth_cache: dict[str, tuple[float, Any]] = {}
        self.auth_lock = threading.Lock()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back if it raises."""
        with self._sessions() as s, s.begin():
            yield s

    @property
    def sqlite_files(self) -> list[Path]:
        """The database file and its WAL (for erasure checks); empty for PostgreSQL."""
        if not self.is_sqlite or not self.engine.url.database:
            return []
        db = Path(self.engine.url.database)
        return [p for p in (db, db.with_name(db.name + "-wal")) if p.exists()]

    def compact(self, tables: list[str]) -> None:
        """Make deleted text unrecoverable from the database files.

        SQLite: ``secure_delete`` zeroes freed pages, but the WAL still holds the old page
        images until a checkpoint truncates it. PostgreSQL keeps dead tuples until VACUUM.
        """
        if self.is_sqlite:
            with self.engine.connect() as c:
                c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                for t in tables:
                    c.exec_driver_sql(f"VACUUM {t}")

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never wait for the capture writer
    cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at each checkpoint
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA secure_delete=ON")  # erased text is zeroed, not left in free pages
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def open_store(url: str | None = None, home: Path | None = None, migrate: bool = True) -> Store:
    """Open (creating and migrating) the store at ``url``, else SQLite in ``home``."""
    if url is None:
        if home is None:
            raise ConfigError("open_store needs a database URL or a home directory")
        home.mkdir(parents=True, exist_ok=True)
        url = sqlite_url(home)
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"invalid database URL {url!r}: {exc}") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 10}
    else:
        kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=20)
    engine = create_engine(parsed, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    store = Store(engine)
    try:
        if migrate:
            migrate_to_head(store)
    except OperationalError as exc:
        engine.dispose()
        raise ConfigError(
            f"cannot open the store at {parsed.render_as_string(hide_password=True)}: {exc.orig}"
        ) from exc
    return store


def migrate_to_head(store: Store) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with store.engine.begin() as conn:
        if store.engine.dialect.name == "postgresql":
            # Several gateways may start at once: one migrates, the others wait for it.
            conn.execute(text("SELECT pg_advisory_xact_lock(7216482)"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
