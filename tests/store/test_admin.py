"""The library under the admin API and the CLI: tenants made and shown with their counts,
people listed, a key's scope changed, one capture erased, the audit log filtered and
paged, retention run as one audited action."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from openclone.cli import app
from openclone.errors import InvalidRequestError
from openclone.store import Store
from openclone.store.accounts import create_tenant, list_tenants, set_tenant_policy
from openclone.store.admin import list_users, tenant_detail
from openclone.store.audit import list_audit
from openclone.store.conversations import get_conversation
from openclone.store.keys import (
    authenticate,
    create_key,
    list_keys,
    revoke_key,
    set_key_scope,
)
from openclone.store.privacy import erase, run_retention
from store.helpers import ANA, capture_ids, exchange, write


def test_tenants_are_made_once_and_shown_with_what_they_hold(store: Store) -> None:
    create_tenant(store, "acme", actor="key:a", consent=True, retention_days=30)
    with pytest.raises(InvalidRequestError, match="exists") as exists:
        create_tenant(store, "acme", actor="key:a")
    assert exists.value.code == "tenant_exists"
    with pytest.raises(InvalidRequestError, match="no tenant named 'ghost'"):
        set_tenant_policy(store, "ghost", actor="key:a", consent=True, create=False)
    assert [t.name for t in list_tenants(store)] == ["acme"]  # nothing made by the refusal

    create_key(store, "acme", "ana")
    revoked = create_key(store, "acme", "bob")[0]
    revoke_key(store, revoked.id)
    write(store, exchange("one", conversation="c1"), exchange("two", conversation="c1"),
          exchange("three", user="bob"))  # fmt: skip
    t = tenant_detail(store, "acme")
    assert (t.consent_default, t.retention_days, t.users, t.keys, t.revoked_keys) == (
        True, 30, 2, 1, 1,
    )  # fmt: skip
    assert (t.captures, t.conversations, t.responses, t.tokens_this_month) == (3, 1, 0, 0)
    assert [(u.name, u.keys, u.captures, u.conversations) for u in list_users(store, "acme")] == [
        ("ana", 1, 2, 1),
        ("bob", 0, 1, 0),
    ]
    assert [u.name for u in list_users(store, "acme", offset=1, limit=5)] == ["bob"]
    create_tenant(store, "globex", actor="key:a")
    assert [t.name for t in list_tenants(store, offset=1, limit=1)] == ["globex"]
    assert [k.user for k in list_keys(store, "acme", offset=1)] == ["bob"]


def test_a_key_scope_change_is_seen_at_once(store: Store) -> None:
    info, token = create_key(store, "acme")
    assert authenticate(store, token).scope == "user"  # type: ignore[union-attr]  # now cached
    assert set_key_scope(store, info.prefix, True, actor="key:a").scope == "admin"
    assert authenticate(store, token).scope == "admin"  # type: ignore[union-attr]
    (entry,) = list_audit(store, action="key.scope")
    assert (entry.actor, entry.detail["scope"]) == ("key:a", "admin")


def test_one_capture_is_erased_with_its_answer(store: Store) -> None:
    first = exchange("first question", "first answer", conversation="c1")
    history = [{"role": "user", "content": "first question"},
               {"role": "assistant", "content": "first answer"}]  # fmt: skip
    second = exchange("second question", "second answer", conversation="c1", history=history)
    write(store, first, second)
    create_key(store, "globex")
    with pytest.raises(InvalidRequestError, match="no capture"):
        erase(store, actor="admin", capture=first.id, tenant="globex")  # not that tenant's
    result = erase(store, actor="admin", capture=second.id, tenant="acme")
    assert (result.kind, result.target) == ("capture", second.id)
    assert result.counts["captures"] == 1 and result.counts["turns"] == 1
    assert capture_ids(store) == {first.id}
    kept = [m["content"] for m in get_conversation(store, ANA, "c1").messages]
    assert kept == ["first question", "first answer", "second question"]


def test_the_audit_log_filters_by_actor_and_pages(store: Store) -> None:
    for i in range(5):
        set_tenant_policy(store, f"t{i}", actor="key:a" if i % 2 else "cli", consent=True)
    by_a = list_audit(store, actor="key:a")
    assert [e.detail["tenant"] for e in by_a] == ["t3", "t1"]
    page1 = list_audit(store, 2)
    page2 = list_audit(store, 2, after=page1[-1].id)
    page3 = list_audit(store, 2, after=page2[-1].id)
    assert [e.detail["tenant"] for e in page1 + page2 + page3] == ["t4", "t3", "t2", "t1", "t0"]


def test_a_retention_run_is_audited_even_when_nothing_is_due(store: Store) -> None:
    set_tenant_policy(store, "acme", actor="admin", retention_days=1)
    write(store, exchange("old", created=time.time() - 3 * 86400), exchange("new"))
    first = run_retention(store, actor="key:a")
    assert [r.counts["captures"] for r in first] == [1]
    assert run_retention(store, actor="key:a") == []
    runs = list_audit(store, action="retention.run")
    assert [(e.actor, e.detail["captures"]) for e in runs] == [("key:a", 0), ("key:a", 1)]


def test_the_cli_reaches_the_same_functions(store: Store, store_url: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("OPENCLONE_DATABASE_URL", store_url)
    runner = CliRunner()

    def ok(*args: str) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0, result.output
        return result.stdout

    info = create_key(store, "acme", "ana")[0]
    one = exchange("a question")
    write(store, one)
    assert "scope admin" in ok("keys", "set", info.prefix, "--scope", "admin")
    shown = ok("tenants", "show", "acme")
    assert "1 users, 1 live keys (0 revoked), 1 captures" in shown
    assert f"erased capture {one.id}" in ok("erase", "--capture", one.id, "--yes")
    assert "key.scope" in ok("audit", "list", "--actor", "cli")
    assert capture_ids(store) == set()
