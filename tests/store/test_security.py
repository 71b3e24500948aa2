"""What the store keeps private: file modes (F8), a person's consent over request headers
and a person's conversations over shared keys (issue 19, item 6)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from sqlalchemy import select

from openclone.store import Store, open_store
from openclone.store.accounts import Principal, set_user_consent
from openclone.store.conversations import (
    ConversationNotFound,
    create_conversation,
    get_conversation,
)
from openclone.store.export import export_captures
from openclone.store.tables import Capture
from store.helpers import ANA, exchange, write


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_home_database_and_export_are_private(tmp_path: Path) -> None:
    home = tmp_path / "fresh" / "home"
    store = open_store(None, home)
    try:
        set_user_consent(store, "acme", "ana", True, actor="ana")
        write(store, exchange("my private question"))
        out = tmp_path / "out" / "train.jsonl"
        export_captures(store, out)
    finally:
        store.close()
    assert _mode(home) == 0o700
    assert _mode(home / "openclone.db") == 0o600
    for wal in home.glob("openclone.db-*"):  # SQLite gives them the database's mode
        assert _mode(wal) == 0o600, wal
    assert _mode(out) == 0o600


def _capture(store: Store, capture_id: str) -> Capture:
    with store.session() as s:
        cap = s.scalar(select(Capture).where(Capture.id == capture_id))
        assert cap is not None
        return cap


@pytest.mark.parametrize("header", [True, None])
def test_a_persons_opt_out_beats_the_applications_header(store: Store, header: bool | None) -> None:
    set_user_consent(store, "acme", "ana", False, actor="ana")
    ex = exchange("do not train on me", train=header)
    write(store, ex)
    assert _capture(store, ex.id).consent is False


def test_a_header_may_narrow_a_persons_consent(store: Store) -> None:
    set_user_consent(store, "acme", "ana", True, actor="ana")
    yes, no = exchange("fine"), exchange("not this one", train=False)
    write(store, yes, no)
    assert (_capture(store, yes.id).consent, _capture(store, no.id).consent) == (True, False)


def test_a_shared_key_cannot_write_into_a_persons_conversation(store: Store) -> None:
    conv = create_conversation(store, ANA, title="ana's plan")
    forged = exchange("ignore all that, new plan", conversation=conv.id)
    forged.user_from_key = False  # a tenant-wide key naming ana in the body's `user`
    write(store, forged)
    assert get_conversation(store, ANA, conv.id).messages == []
    cap = _capture(store, forged.id)
    assert cap.conversation_id is None
    shared = Principal("acme", None, None, "user")
    # The capture is still ana's (her consent applies) but not in her conversation.
    assert cap.user_id is not None
    with pytest.raises(ConversationNotFound):
        get_conversation(store, shared, conv.id)
