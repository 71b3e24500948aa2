"""Opening the store: the engine, per-backend settings, migrations to head."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from openclone.errors import ConfigError
from openclone.files import PRIVATE_DIR, make_private_dir
from openclone.store.crypto import KEYRING, Keyring, keyring_for

if TYPE_CHECKING:
    from openclone.config import Settings

__all__ = [
    "BULK",
    "PRIVATE_DIR",
    "PRIVATE_FILE",
    "Store",
    "bulk",
    "downgrade",
    "make_private_dir",
    "migrate",
    "open_private",
    "open_store",
    "sqlite_url",
]

log = logging.getLogger("openclone.store")

# For UPDATE/DELETE statements over many rows: no ORM objects of those rows are loaded, so
# the session has none to keep in step.
BULK = {"synchronize_session": False}


def bulk(s: Session, stmt: Any) -> int:
    """Execute a bulk UPDATE or DELETE; how many rows it touched."""
    return int(s.execute(stmt, execution_options=BULK).rowcount)  # type: ignore[attr-defined]


_MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK = 7216482  # any constant: the PostgreSQL advisory lock the migrators share


PRIVATE_FILE = 0o600  # captured text is the people's: only the account running OpenClone


def sqlite_url(home: Path) -> str:
    return f"sqlite:///{home / 'openclone.db'}"


def open_private(path: Path, mode: str = "w", encoding: str | None = "utf-8") -> Any:
    """``open(path, mode)`` where a file it creates is 0600 from its first byte (a chmod
    after writing would leave a window in which others can open it)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(path, flags, PRIVATE_FILE)
    return os.fdopen(fd, mode, encoding=None if "b" in mode else encoding)


class Store:
    """One database. Thread-safe: every call opens its own short session.

    ``vacuum_full`` (PostgreSQL only): after an erasure, rewrite the touched tables with
    ``VACUUM FULL``. A plain ``VACUUM`` frees dead tuples but can leave their bytes in the
    page's free space (measured: the most recently inserted row of a page survives it), so
    only a rewrite keeps the promise that erased text is gone from the database files. It
    takes an exclusive lock on those tables while it runs; set it off to trade that promise
    for availability on very large stores.
    """

    def __init__(
        self, engine: Engine, *, vacuum_full: bool = True, keyring: Keyring | None = None
    ) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self.vacuum_full = vacuum_full
        # The tenants' data keys: what seals captured text, conversations and feedback
        # (store/crypto.py). Without a master key nothing is sealed.
        self.keyring = keyring if keyring is not None else Keyring()
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        # The API key cache lives with the store so a revoke through it is seen at once.
        self.auth_cache: dict[str, tuple[float, Any]] = {}
        self.auth_lock = threading.Lock()
        self.auth_seen: tuple[int, int] | None = None  # keys_version() the cache is valid for
        # SQLite: every process on this machine using the database appends a byte to this
        # file when it creates, revokes or deletes a key, so another process's gateway sees
        # the change with one stat() per request instead of a query (see keys_version).
        database = engine.url.database if self.is_sqlite else None
        self._keys_stamp = Path(database + ".keys") if database else None

    def keys_changed(self) -> None:
        """Tell every gateway on this store that a key was created, revoked or deleted."""
        with self.auth_lock:
            self.auth_cache.clear()
        if self._keys_stamp is not None:
            with open_private(self._keys_stamp, "ab") as f:
                f.write(b".")  # the size only grows: two changes in one clock tick still differ

    def keys_version(self) -> tuple[int, int] | None:
        """What :meth:`keys_changed` last wrote, as a cheap stat (SQLite); ``None`` where it
        cannot be seen (PostgreSQL: gateways on other machines), so callers use a short TTL."""
        if self._keys_stamp is None:
            return None
        try:
            st = os.stat(self._keys_stamp)
        except FileNotFoundError:
            return (0, 0)
        return (st.st_size, st.st_mtime_ns)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back if it raises."""
        with self._sessions() as s, s.begin():
            s.info[KEYRING] = self.keyring  # what store/sealed.py seals and opens with
            yield s

    def compact(self, tables: list[str]) -> bool:
        """Make deleted text unrecoverable from the database files.

        SQLite: ``secure_delete`` zeroes freed cells and pages, but the WAL still holds the
        page images written before the delete until a checkpoint copies the new pages back
        and truncates it. PostgreSQL keeps dead tuples until VACUUM (see ``vacuum_full``);
        its WAL segments (``pg_wal``) and any backups are outside what a store can rewrite.

        Returns False (and logs why) when that could not be done now.
        """
        if self.is_sqlite:
            return self._checkpoint()
        verb = "VACUUM FULL" if self.vacuum_full else "VACUUM"
        try:
            # VACUUM cannot run inside a transaction block. A long transaction elsewhere
            # would make VACUUM FULL wait for its lock without end: give up after a while.
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.exec_driver_sql("SET lock_timeout = '60s'")
                try:
                    for t in tables:
                        c.exec_driver_sql(f"{verb} {t}")
                finally:
                    c.exec_driver_sql("RESET lock_timeout")  # the pool reuses the connection
        except SQLAlchemyError:
            log.exception("%s after an erasure failed; run it by hand on %s", verb, tables)
            return False
        return True

    def _checkpoint(self, timeout: float = 10.0) -> bool:
        # A reader in the middle of a transaction (the capture writer, a request) keeps the
        # checkpoint from finishing; it reports busy and we try again shortly.
        deadline = time.monotonic() + timeout
        while True:
            with self.engine.connect() as c:
                busy, _, _ = c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
            if not busy:
                return True
            if time.monotonic() > deadline:
                log.warning("WAL checkpoint still busy after %.0fs; erased text may stay in "
                            "the WAL until the next checkpoint", timeout)  # fmt: skip
                return False
            time.sleep(0.05)

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never wait for the capture writer
    # WAL + NORMAL: a commit survives a process crash (kill -9), only an OS crash or power
    # loss can take the last commits; FULL would fsync every capture batch.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA secure_delete=ON")  # erased text is zeroed, not left in free pages
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _resolve(target: Settings | str | None, home: Path | None) -> tuple[URL, bool, Path | None]:
    """The URL, ``vacuum_full``, and the SQLite file this open is to create (None: there
    is one, or the store is PostgreSQL)."""
    vacuum_full, missing = True, None
    if target is not None and not isinstance(target, str):
        url, home, vacuum_full = target.database_url, target.home, target.erase_vacuum_full
    else:
        url = target
    if url is None:
        if home is None:
            raise ConfigError("open_store needs settings, a database URL or a home directory")
        make_private_dir(home)
        url = sqlite_url(home)
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"invalid database URL {url!r}: {exc}") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(f"the store runs on SQLite or PostgreSQL, not {backend!r} ({url!r})")
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            # Every thread (the capture writer, request handlers) needs the same database.
            raise ConfigError("the store needs an SQLite file, not an in-memory database")
        database = Path(parsed.database)
        make_private_dir(database.parent)
        if not database.exists():
            missing = database
    return parsed, vacuum_full, missing


def _keyring(
    target: Settings | str | None, home: Path | None, *, local: bool, new: bool
) -> Keyring:
    """Settings name the master key (or a KMS) and the mode; a bare URL or home uses the
    home's own ``master.key`` (made for a new home store, as ``openclone serve`` does)."""
    if target is not None and not isinstance(target, str):
        secret = target.master_key.get_secret_value() if target.master_key else None
        return keyring_for(
            mode=target.encryption, master_key=secret, master_key_file=target.master_key_file,
            kms=target.kms, home=target.home, local_store=local, new_store=new,
        )  # fmt: skip
    return keyring_for(home=home, local_store=local, new_store=new)


def open_store(
    target: Settings | str | None = None,
    home: Path | None = None,
    *,
    migrate: bool = True,
    keyring: Keyring | None = None,
) -> Store:
    """Open the store and bring its schema to the newest revision.

    ``target`` is the :class:`~openclone.config.Settings` (``database_url``, else SQLite in
    ``home``) or a database URL; with neither, ``home`` names the SQLite directory.

    Encryption at rest (``store/crypto.py``): ``keyring`` when given; else the settings'
    master key (or KMS) and ``encryption`` mode; else, with a bare ``home``, its own
    ``master.key`` (made when this open creates the store). A master key that did not wrap
    the store's data keys is a :class:`~openclone.errors.ConfigError` here, before anything
    is read.
    """
    url, vacuum_full, missing = _resolve(target, home)
    local = url.get_backend_name() == "sqlite"
    # The key before the database file: an opener that finds the new file finds its key.
    keys = keyring or _keyring(target, home, local=local, new=missing is not None)
    if missing is not None:
        # SQLite gives its -wal and -shm files the database file's mode, so a 0600
        # database keeps the write-ahead log (recent captures) private too.
        open_private(missing, "ab").close()
    kwargs: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 10}
    else:
        kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=20)
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    store = Store(engine, vacuum_full=vacuum_full, keyring=keys)
    try:
        if migrate:
            _run_migrations(store, "upgrade", "head")
            with store.session() as s:
                store.keyring.check(s)
    except OperationalError as exc:
        engine.dispose()
        where = url.render_as_string(hide_password=True)
        raise ConfigError(f"cannot open the store at {where}: {exc.orig}") from exc
    except BaseException:
        engine.dispose()
        raise
    return store


def migrate(store: Store, revision: str = "head") -> None:
    """Upgrade the schema to ``revision`` (``open_store`` already goes to head)."""
    _run_migrations(store, "upgrade", revision)


def downgrade(store: Store, revision: str) -> None:
    """Downgrade the schema to ``revision`` (``"base"``: no tables at all)."""
    _run_migrations(store, "downgrade", revision)


def _run_migrations(store: Store, direction: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    # Several processes (gateway replicas, a CLI command) may open a new store at once:
    # exactly one migrates while the others wait, then they find the schema at head.
    with _migration_lock(store), store.engine.begin() as conn:
        if not store.is_sqlite:
            conn.execute(text(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})"))
        cfg.attributes["connection"] = conn
        getattr(command, direction)(cfg, revision)


@contextmanager
def _migration_lock(store: Store) -> Iterator[None]:
    """SQLite: an exclusive lock on a file beside the database.

    pysqlite runs DDL outside a transaction, so the database's own lock cannot make two
    migrators take turns; a second one would try to create the tables again.
    """
    if not store.is_sqlite or not store.engine.url.database:
        yield
        return
    import fcntl

    lock = Path(store.engine.url.database).with_suffix(".migrate-lock")
    with open_private(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
