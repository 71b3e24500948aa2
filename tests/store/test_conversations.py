"""Conversations as the chat UI uses them: always the caller's own, never anyone else's."""

from __future__ import annotations

import pytest

from openclone.errors import InvalidRequestError
from openclone.store import Store
from openclone.store.accounts import Principal
from openclone.store.conversations import (
    ConversationNotFound,
    create_conversation,
    delete_conversation,
    get_conversation,
    list_conversations,
    search_conversations,
    truncate_conversation,
    update_conversation,
)
from store.helpers import ANA, ANA_AT_GLOBEX, BOB, exchange, write


def test_a_new_conversation_can_be_renamed_and_configured(store: Store) -> None:
    conv = create_conversation(store, ANA, title="Plans", model="m", system_prompt="Be brief.")
    changed = update_conversation(store, ANA, conv.id, title="Holiday plans", temperature=0.2)
    assert (changed.title, changed.model, changed.system_prompt, changed.temperature) == (
        "Holiday plans", "m", "Be brief.", 0.2,
    )  # fmt: skip
    again = update_conversation(store, ANA, conv.id, model="other", system_prompt="")
    assert (again.model, again.system_prompt, again.temperature) == ("other", "", 0.2)
    assert get_conversation(store, ANA, conv.id).title == "Holiday plans"


def test_bad_changes_are_refused_with_a_reason(store: Store) -> None:
    conv = create_conversation(store, ANA)
    with pytest.raises(InvalidRequestError, match="temperature"):
        update_conversation(store, ANA, conv.id, temperature=5)
    with pytest.raises(InvalidRequestError, match="cannot change id"):
        update_conversation(store, ANA, conv.id, id="x")
    with pytest.raises(InvalidRequestError, match="keep"):
        truncate_conversation(store, ANA, conv.id, -1)


def test_newest_first_and_only_ones_own(store: Store) -> None:
    first = create_conversation(store, ANA, title="first")
    second = create_conversation(store, ANA, title="second")
    create_conversation(store, BOB, title="bob's")
    create_conversation(store, ANA_AT_GLOBEX, title="same name, other tenant")
    assert [c.title for c in list_conversations(store, ANA)] == ["second", "first"]
    update_conversation(store, ANA, first.id, title="first, renamed")  # now the latest used
    assert [c.id for c in list_conversations(store, ANA)] == [first.id, second.id]
    assert [c.title for c in list_conversations(store, BOB)] == ["bob's"]
    assert [c.title for c in list_conversations(store, ANA_AT_GLOBEX)] == [
        "same name, other tenant"
    ]
    assert list_conversations(store, Principal("nobody-yet", "x", None, "user")) == []


def test_another_persons_conversation_does_not_exist_for_you(store: Store) -> None:
    mine = create_conversation(store, ANA, title="mine")
    for who in (BOB, ANA_AT_GLOBEX, Principal("acme", None, "k", "user")):
        with pytest.raises(ConversationNotFound):
            get_conversation(store, who, mine.id)
        with pytest.raises(ConversationNotFound):
            update_conversation(store, who, mine.id, title="stolen")
        with pytest.raises(ConversationNotFound):
            truncate_conversation(store, who, mine.id, 0)
        with pytest.raises(ConversationNotFound):
            delete_conversation(store, who, mine.id)
    assert get_conversation(store, ANA, mine.id).title == "mine"


def test_search_finds_titles_and_messages_literally(store: Store) -> None:
    write(
        store,
        exchange("What is 100% of nothing?", "Nothing.", conversation="c-pct"),
        exchange("Tell me about snake_case", "It_is_a style.", conversation="c-snake"),
        exchange("Unrelated", "Yes.", conversation="c-other"),
    )
    create_conversation(store, ANA, title="PERCENT talk")
    assert [c.id for c in search_conversations(store, ANA, "100%")] == ["c-pct"]
    assert [c.id for c in search_conversations(store, ANA, "e_c")] == ["c-snake"]  # _ is literal
    assert {c.title for c in search_conversations(store, ANA, "percent")} == {"PERCENT talk"}
    assert search_conversations(store, BOB, "nothing") == []


def test_truncate_then_delete(store: Store) -> None:
    history = [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}]
    write(store, exchange("Q2", "A2", conversation="c1", history=history))
    truncate_conversation(store, ANA, "c1", 2)  # edit the second question: keep Q1 and A1
    assert [m["content"] for m in get_conversation(store, ANA, "c1").messages] == ["Q1", "A1"]
    delete_conversation(store, ANA, "c1")
    with pytest.raises(ConversationNotFound):
        get_conversation(store, ANA, "c1")
    assert list_conversations(store, ANA) == []
