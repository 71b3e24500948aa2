"""Stored chat completions in the store, on SQLite and PostgreSQL: metadata filters (any
key), paging both ways, tenants apart, erasure takes them with their captures."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from openclone.store import Store
from openclone.store.privacy import erase
from openclone.store.stored_completions import (
    CompletionNotFound,
    delete_completion,
    get_completion,
    list_completions,
    update_metadata,
)
from openclone.store.tables import Capture, StoredCompletion
from openclone.store.writer import CaptureWriter
from store.helpers import exchange

ODD_KEYS = ["plain", "a.b", 'q"q', "back\\slash", "é", "$[0]", ""]


def _keep(store: Store, *specs: tuple[str, str, str | None, dict[str, str]]) -> None:
    """(completion id, tenant, user, metadata) each, kept as ``store: true`` does."""
    writer = CaptureWriter(store)
    try:
        for n, (cid, tenant, user, metadata) in enumerate(specs):
            ex = exchange(f"prompt {cid}", tenant=tenant, user=user, created=1000.0 + n)
            ex.response = {**(ex.response or {}), "id": cid}
            ex.store, ex.metadata = True, metadata
            assert writer.write_now([ex]) == 0
    finally:
        writer.close()


def _ids(store: Store, tenant: str = "acme", **filters: object) -> list[str]:
    return [r.id for r in list_completions(store, tenant, **filters).data]  # type: ignore[arg-type]


def test_metadata_filters_match_any_key_and_pages_follow(store: Store) -> None:
    _keep(store, *[(f"c{i}", "acme", None, {k: f"v{i % 2}", "n": str(i)})
                   for i, k in enumerate(ODD_KEYS * 2)])  # fmt: skip
    for i, key in enumerate(ODD_KEYS):
        j = i + len(ODD_KEYS)
        wanted = [f"c{n}" for n in (i, j) if n % 2 == i % 2]
        assert _ids(store, metadata={key: f"v{i % 2}"}) == wanted, key
    everything = [f"c{i}" for i in range(2 * len(ODD_KEYS))]
    pages, after = [], None
    while True:
        page = list_completions(store, "acme", limit=3, after=after)
        pages += [r.id for r in page.data]
        if not page.has_more:
            break
        after = page.data[-1].id
    assert pages == everything
    assert _ids(store, order="desc", limit=4) == everything[::-1][:4]
    assert _ids(store, after="c3", limit=2) == ["c4", "c5"]
    assert _ids(store, after="c3", order="desc") == ["c2", "c1", "c0"]
    assert _ids(store, metadata={'q"q': "v0", "n": "2"}) == ["c2"]
    assert _ids(store, after="nope") == []


def test_tenants_apart_updates_and_deletes(store: Store) -> None:
    _keep(store, ("mine", "acme", "ana", {"k": "v"}), ("theirs", "globex", None, {"k": "v"}))
    assert _ids(store) == ["mine"] and _ids(store, "globex") == ["theirs"]
    with pytest.raises(CompletionNotFound):
        get_completion(store, "globex", "mine")
    with pytest.raises(CompletionNotFound):
        update_metadata(store, "globex", "mine", {})
    rec = update_metadata(store, "acme", "mine", {"reviewed": "yes"})
    assert rec.metadata == {"reviewed": "yes"}
    assert rec.request["messages"][-1]["content"] == "prompt mine"
    assert _ids(store, metadata={"k": "v"}) == []
    delete_completion(store, "acme", "mine")
    with pytest.raises(CompletionNotFound):
        get_completion(store, "acme", "mine")
    with store.session() as s:  # the capture stays: it answers to consent and erasure
        assert s.scalar(select(func.count()).select_from(Capture)) == 2


def test_erasure_takes_them_with_their_captures(store: Store) -> None:
    _keep(store, ("a1", "acme", "ana", {}), ("b1", "acme", "bob", {}), ("g1", "globex", None, {}))
    result = erase(store, actor="test", tenant="acme", user="ana")
    assert result.counts["stored_completions"] == 1
    assert _ids(store) == ["b1"]
    result = erase(store, actor="test", tenant="globex")
    assert result.counts["stored_completions"] == 1
    with store.session() as s:
        assert list(s.scalars(select(StoredCompletion.completion_id))) == ["b1"]
