"""API keys and consent as an admin and a person would meet them."""

from __future__ import annotations

import pytest

from openclone.errors import InvalidRequestError
from openclone.store import Store
from openclone.store.accounts import set_tenant_policy, set_user_consent, user_consent
from openclone.store.audit import list_audit
from openclone.store.keys import any_keys, authenticate, create_key, list_keys, revoke_key


def test_a_key_authenticates_until_revoked(store: Store) -> None:
    assert not any_keys(store)
    info, token = create_key(store, "acme", user="ana")
    assert token.startswith("oc-") and info.prefix == token[:10]
    who = authenticate(store, token)
    assert who is not None and (who.tenant, who.user, who.scope) == ("acme", "ana", "user")
    assert authenticate(store, token + "x") is None
    assert any_keys(store)
    revoke_key(store, info.prefix)
    assert authenticate(store, token) is None  # at once through the same store
    assert not any_keys(store)
    assert [k.revoked is not None for k in list_keys(store)] == [True]


def test_the_plaintext_key_is_never_stored(store: Store) -> None:
    _, token = create_key(store, "acme", admin=True)
    with store.engine.connect() as c:
        rows = c.exec_driver_sql("SELECT * FROM api_keys").fetchall()
    assert rows and all(token not in str(r) for r in rows)
    assert authenticate(store, token).scope == "admin"  # type: ignore[union-attr]


def test_revoking_an_unknown_key_says_so(store: Store) -> None:
    with pytest.raises(InvalidRequestError, match="no API key"):
        revoke_key(store, "oc-nothing")


def test_consent_is_off_by_default_and_the_person_can_override_the_tenant(store: Store) -> None:
    assert user_consent(store, "acme", "ana") is False
    set_tenant_policy(store, "acme", actor="admin", consent=True)
    assert user_consent(store, "acme", "ana") is True
    set_user_consent(store, "acme", "ana", False, actor="ana")
    assert user_consent(store, "acme", "ana") is False
    assert user_consent(store, "acme", "bob") is True
    actions = [a.action for a in list_audit(store)]
    assert actions[:2] == ["user.consent", "tenant.policy"]
