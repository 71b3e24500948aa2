"""The store's commands, as an admin types them: clear output, clear errors, no tracebacks."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from openclone.cli import app
from openclone.store import Store, open_store
from openclone.store.accounts import set_tenant_policy
from openclone.store.keys import authenticate, list_keys
from store.helpers import capture_ids, exchange, jsonl, write

runner = CliRunner()


@pytest.fixture(autouse=True)
def _database(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENCLONE_DATABASE_URL", store_url)


def _ok(*args: str, input: str | None = None) -> str:
    result = runner.invoke(app, list(args), input=input)
    assert result.exit_code == 0, result.output
    assert result.exception is None
    return result.stdout


def _error(code: int, *args: str, input: str | None = None) -> str:
    result = runner.invoke(app, list(args), input=input)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.stderr


def test_a_key_is_printed_alone_on_the_last_line_and_works(store: Store, store_url: str) -> None:
    out = _ok("keys", "create", "--tenant", "acme", "--user", "ana", "--admin")
    token = out.strip().splitlines()[-1]
    who = authenticate(store, token)
    assert who is not None and (who.tenant, who.user, who.scope) == ("acme", "ana", "admin")
    (key,) = list_keys(store)
    listing = _ok("keys", "list", "--tenant", "acme")
    assert key.prefix in listing and "admin" in listing and token not in listing
    assert key.prefix in _ok("keys", "revoke", key.prefix)
    assert list_keys(store)[0].revoked is not None
    fresh = open_store(store_url)  # a gateway that had not cached the key
    assert authenticate(fresh, token) is None
    fresh.close()


def test_mistakes_are_one_clear_line_and_a_non_zero_exit(store: Store) -> None:
    assert "no API key with id or prefix 'oc-nope'" in _error(1, "keys", "revoke", "oc-nope")
    assert "no tenant named 'ghost'" in _error(1, "keys", "list", "--tenant", "ghost")
    assert "no tenant named 'ghost'" in _error(1, "erase", "--tenant", "ghost", "--yes")
    assert "say what to erase" in _error(2, "erase", "--yes")
    assert "--tenant" in _error(2, "erase", "--user", "ana", "--yes")
    assert "on, off" in _error(2, "tenants", "set", "acme", "--consent", "maybe")
    assert "store, export, off" in _error(2, "tenants", "set", "acme", "--redact", "never")
    assert "2026-01-31" in _error(2, "captures", "export", "--out", "x.jsonl", "--since", "May")
    assert "at least 1 day" in _error(1, "tenants", "set", "acme", "--retention-days", "0")


def test_a_bad_config_file_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENCLONE_DATABASE_URL")  # the environment would win over the file
    cfg = tmp_path / "openclone.toml"
    cfg.write_text("database_url = 'mysql://x@y/z'\n")
    assert "SQLite or PostgreSQL" in _error(2, "keys", "list", "--config", str(cfg))


def test_tenant_policy_then_export_then_erase(store: Store, tmp_path: Path) -> None:
    out = _ok("tenants", "set", "acme", "--consent", "on", "--redact", "export",
              "--retention-days", "30")  # fmt: skip
    assert "acme: consent on, redact export, retention 30 days" in out
    assert "acme" in _ok("tenants", "list")
    ana, bob = exchange("ana asks", user="ana"), exchange("bob asks", user="bob")
    write(store, ana, bob)
    assert "ana" in _ok("captures", "list", "--tenant", "acme")
    data = tmp_path / "train.jsonl"
    assert "wrote 2 rows" in _ok("captures", "export", "--out", str(data), "--tenant", "acme")

    assert "nothing erased" in _error(1, "erase", "--user", "ana", "--tenant", "acme", input="n\n")
    assert capture_ids(store) == {ana.id, bob.id}
    out = _ok("erase", "--user", "ana", "--tenant", "acme", input="y\n")
    assert "erased user ana of tenant acme: 1 captures" in out and "rewrote the 1 export" in out
    assert capture_ids(store) == {bob.id}
    assert [r["metadata"]["capture_id"] for r in jsonl(data)] == [bob.id]
    assert "user" in _ok("audit", "erasures") and "rewritten" in _ok("audit", "erasures")
    actions = _ok("audit", "list")
    assert "tenant.policy" in actions and "export" in actions and "erase" in actions


def test_retention_from_the_command_line(store: Store) -> None:
    assert "nothing past its retention" in _ok("retention", "apply")
    set_tenant_policy(store, "acme", actor="admin", retention_days=1)
    old = exchange("old", created=0.0)
    write(store, old, exchange("new"))
    assert "acme: erased 1 captures" in _ok("retention", "apply")
    assert old.id not in capture_ids(store)
