"""Opening the store: migrations up and down, concurrent openers, backend settings."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.engine import make_url

from openclone.config import Settings
from openclone.errors import ConfigError
from openclone.store import Store, open_store
from openclone.store.accounts import set_tenant_policy
from openclone.store.db import downgrade, migrate
from openclone.store.export import export_captures
from openclone.store.keys import create_key, list_keys
from openclone.store.privacy import add_feedback
from openclone.store.tables import Base, Export, Feedback, User
from store.helpers import ANA, exchange, write

STORE_TABLES = {
    "tenants", "users", "api_keys", "conversations", "messages", "captures", "feedback",
    "erasures", "exports", "export_items", "audit_log",
}  # fmt: skip


def _tables(store: Store) -> set[str]:
    return set(inspect(store.engine).get_table_names()) - {"alembic_version"}


def _columns(store: Store, table: str) -> set[str]:
    return {c["name"] for c in inspect(store.engine).get_columns(table)}


def test_migrations_run_down_to_nothing_and_up_again(empty_url: str, tmp_path: Path) -> None:
    store = open_store(empty_url)
    try:
        assert _tables(store) == set(Base.metadata.tables)
        assert _tables(store) >= STORE_TABLES
        create_key(store, "acme")
        set_tenant_policy(store, "acme", actor="admin", consent=True)
        ex = exchange("rated")
        write(store, ex)
        add_feedback(store, ANA, ex.id, 1)
        export = export_captures(store, tmp_path / "x.jsonl")

        downgrade(store, "0002")  # one step back keeps the data
        assert "last_used" not in _columns(store, "api_keys")
        assert "user_id" not in _columns(store, "feedback")
        migrate(store)  # and forward again fills the new columns from it

        assert [k.tenant for k in list_keys(store)] == ["acme"]
        with store.session() as s:
            assert s.get(Export, export.id).hashes == [export.sha256]  # type: ignore[union-attr]
            (fb,) = s.scalars(select(Feedback))
            user = s.get(User, fb.user_id)
            assert user is not None and user.name == "ana"
        downgrade(store, "base")
        assert _tables(store) == set()
        migrate(store)
        assert _tables(store) == set(Base.metadata.tables)
    finally:
        store.close()


def test_the_tables_match_the_models_after_migrating(store: Store) -> None:
    """No model change is left without its migration."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_many_processes_opening_a_new_store_at_once_migrate_it_once(empty_url: str) -> None:
    errors: list[BaseException] = []

    def opener() -> None:
        try:
            open_store(empty_url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    store = open_store(empty_url)
    assert _tables(store) == set(Base.metadata.tables)
    store.close()


def test_settings_choose_the_database(store_url: str, home: Path) -> None:
    store = open_store(Settings(home=home, database_url=store_url, models=[]))
    try:
        assert store.engine.url.database == make_url(store_url).database
    finally:
        store.close()


def test_sqlite_in_home_is_the_default(home: Path) -> None:
    store = open_store(Settings())  # OPENCLONE_HOME is this test's home
    try:
        assert store.is_sqlite and (home / "openclone.db").exists()
        with store.engine.connect() as c:
            pragma = {p: c.exec_driver_sql(f"PRAGMA {p}").scalar()
                      for p in ("journal_mode", "foreign_keys", "secure_delete")}  # fmt: skip
        assert pragma == {"journal_mode": "wal", "foreign_keys": 1, "secure_delete": 1}
    finally:
        store.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "invalid database URL"),
        ("sqlite://", "SQLite file"),
        ("mysql://u@localhost/db", "SQLite or PostgreSQL"),
        ("postgresql://nobody@127.0.0.1:1/none", "cannot open the store"),
    ],
)
def test_a_bad_database_url_is_a_clear_config_error(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_store(url)
