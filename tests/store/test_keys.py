"""API keys and consent as an admin and a person would meet them."""

from __future__ import annotations

import time

import pytest

from openclone.errors import InvalidRequestError
from openclone.store import Store, open_store
from openclone.store.accounts import (
    list_tenants,
    set_tenant_policy,
    set_user_consent,
    user_consent,
)
from openclone.store.audit import list_audit
from openclone.store.keys import any_keys, authenticate, create_key, list_keys, revoke_key


def test_a_key_authenticates_until_revoked(store: Store) -> None:
    assert not any_keys(store)
    info, token = create_key(store, "acme", user="ana")
    assert token.startswith("oc-") and len(token) > 40 and info.prefix == token[:10]
    who = authenticate(store, token)
    assert who is not None
    assert (who.tenant, who.user, who.key_id, who.scope, who.is_admin) == (
        "acme", "ana", info.id, "user", False,
    )  # fmt: skip
    assert authenticate(store, token + "x") is None
    assert any_keys(store)
    revoke_key(store, info.prefix)
    assert authenticate(store, token) is None  # at once through the same store
    assert not any_keys(store)
    assert [k.revoked is not None for k in list_keys(store)] == [True]


def test_an_admin_key_and_a_key_serving_many_people(store: Store) -> None:
    _, admin = create_key(store, "acme", admin=True)
    _, shared = create_key(store, "acme")
    a, s = authenticate(store, admin), authenticate(store, shared)
    assert a is not None and a.is_admin and a.user is None
    assert s is not None and not s.is_admin and s.user is None


def test_the_plaintext_key_is_never_stored(store: Store) -> None:
    _, token = create_key(store, "acme", admin=True)
    with store.engine.connect() as c:
        rows = c.exec_driver_sql("SELECT * FROM api_keys").fetchall()
    assert rows and all(token not in str(r) and token[10:] not in str(r) for r in rows)


def test_another_gateway_sees_a_revocation(
    store: Store, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("openclone.store.keys.AUTH_TTL", 0.3)
    info, token = create_key(store, "acme")
    other = open_store(store_url)  # a second gateway on the same database
    try:
        assert authenticate(other, token) is not None
        revoke_key(store, info.id)
        if other.keys_version() is None:
            # PostgreSQL: gateways may be on other machines; the cache lives AUTH_TTL there.
            time.sleep(0.4)
        # SQLite: every process on the machine sees the key stamp: refused at once.
        assert authenticate(other, token) is None
    finally:
        other.close()


def test_keys_record_their_last_use_and_list_by_tenant(store: Store) -> None:
    a, token = create_key(store, "acme", user="ana")
    create_key(store, "globex")
    assert list_keys(store, "acme")[0].last_used is None
    before = time.time()
    authenticate(store, token)
    (listed,) = list_keys(store, "acme")
    assert listed.id == a.id and listed.last_used is not None and listed.last_used >= before - 1
    assert [k.tenant for k in list_keys(store)] == ["acme", "globex"]
    with pytest.raises(InvalidRequestError, match="no tenant named 'nope'"):
        list_keys(store, "nope")


def test_revoking_an_unknown_key_says_so(store: Store) -> None:
    with pytest.raises(InvalidRequestError, match="no API key"):
        revoke_key(store, "oc-nothing")


def test_names_must_be_usable(store: Store) -> None:
    with pytest.raises(InvalidRequestError, match="empty"):
        create_key(store, "  ")
    with pytest.raises(InvalidRequestError, match="at most 128"):
        create_key(store, "t" * 129)


def test_consent_is_off_by_default_and_the_person_can_override_the_tenant(store: Store) -> None:
    assert user_consent(store, "acme", "ana") is False
    set_tenant_policy(store, "acme", actor="admin", consent=True)
    assert user_consent(store, "acme", "ana") is True
    set_user_consent(store, "acme", "ana", False, actor="ana")
    assert user_consent(store, "acme", "ana") is False
    assert user_consent(store, "acme", "bob") is True
    set_user_consent(store, "acme", "ana", None, actor="ana")  # back to the tenant's
    assert user_consent(store, "acme", "ana") is True
    actions = [a.action for a in list_audit(store)]
    assert actions[:3] == ["user.consent", "user.consent", "tenant.policy"]


def test_tenant_policies_are_checked_listed_and_audited(store: Store) -> None:
    set_tenant_policy(store, "acme", actor="admin", redact="export", retention_days=30)
    with pytest.raises(InvalidRequestError, match="store, export, off"):
        set_tenant_policy(store, "acme", actor="admin", redact="sometimes")
    with pytest.raises(InvalidRequestError, match="at least 1 day"):
        set_tenant_policy(store, "acme", actor="admin", retention_days=0)
    create_key(store, "acme", user="ana")
    (t,) = list_tenants(store)
    assert (t.name, t.consent_default, t.redact_mode, t.retention_days, t.users, t.keys) == (
        "acme", False, "export", 30, 1, 1,
    )  # fmt: skip
    (entry,) = list_audit(store, action="tenant")
    assert entry.actor == "admin"
    assert entry.detail == {"tenant": "acme", "redact_mode": "export", "retention_days": 30}
    assert [e.action for e in list_audit(store, action="key")] == ["key.create"]
