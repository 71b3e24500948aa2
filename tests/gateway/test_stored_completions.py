"""Stored chat completions (``store: true``) on a real server, through the official client:
list, retrieve, update, delete, messages, metadata filters and paging, tenant isolation,
consent untouched, erasure."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from conftest import BUNDLED, Server, start_server, stop_server
from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam

from openclone.store import open_store
from openclone.store.privacy import erase
from openclone.store.tables import Capture

pytestmark = pytest.mark.slow

HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hi."}]


def _key(home: Path, tenant: str, user: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "openclone", "keys", "create", "--tenant", tenant, "--user", user],
        env={**os.environ, "OPENCLONE_HOME": str(home)}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.splitlines()[-1]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    root = tmp_path_factory.mktemp("stored")
    people = ("acme/ana", "acme/bob", "acme/eve", "globex/gus")
    keys = {who: _key(root / "home", *who.split("/")) for who in people}
    config = f"""
default_model = "{BUNDLED}"

[[models]]
name = "{BUNDLED}"
engine = "llamacpp"
params = {{ n_ctx = 1024 }}
"""
    server = start_server(config, root)
    try:
        yield server, keys
    finally:
        stop_server(server)


def _client(served: tuple[Server, dict[str, str]], who: str) -> OpenAI:
    server, keys = served
    return OpenAI(base_url=server.base_url, api_key=keys[who], max_retries=0)


def _home(served: tuple[Server, dict[str, str]]) -> Path:
    return served[0].log.parent / "home"


def test_a_stored_completion_is_listed_retrieved_updated_and_deleted(served: tuple) -> None:
    ana = _client(served, "acme/ana")
    run = uuid.uuid4().hex
    kept = ana.chat.completions.create(
        model=BUNDLED, messages=HI, max_tokens=6, temperature=0, store=True,
        metadata={"run": run, "topic": "greeting"},
    )  # fmt: skip
    chunks = list(
        ana.chat.completions.create(
            model=BUNDLED, messages=HI, max_tokens=6, temperature=0, store=True,
            metadata={"run": run, "topic": "stream"}, stream=True,
        )
    )  # fmt: skip
    streamed_id = chunks[0].id
    streamed_text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    ana.chat.completions.create(
        model=BUNDLED, messages=HI, max_tokens=4, metadata={"run": run}
    )  # not stored: store is false by default, as OpenAI's

    listed = list(ana.chat.completions.list(metadata={"run": run}))
    assert [c.id for c in listed] == [kept.id, streamed_id]  # oldest first by default
    first, second = listed
    assert first.choices[0].message.content == kept.choices[0].message.content
    assert first.model == BUNDLED
    assert first.metadata == {"run": run, "topic": "greeting"}  # type: ignore[attr-defined]
    assert second.choices[0].message.content == streamed_text
    only = ana.chat.completions.list(metadata={"run": run, "topic": "stream"})
    assert [c.id for c in only] == [streamed_id]
    assert list(ana.chat.completions.list(metadata={"run": run}, model="another-model")) == []

    got = ana.chat.completions.retrieve(kept.id)
    assert got.id == kept.id and got.choices[0].message.content == kept.choices[0].message.content
    assert got.usage is not None and got.usage.completion_tokens > 0

    (message,) = ana.chat.completions.messages.list(kept.id)
    assert message.role == "user" and message.content == "Say hi."  # type: ignore[comparison-overlap]
    assert message.id == f"{kept.id}-0"

    updated = ana.chat.completions.update(kept.id, metadata={"run": run, "reviewed": "yes"})
    assert updated.metadata == {"run": run, "reviewed": "yes"}  # type: ignore[attr-defined]
    assert [c.id for c in ana.chat.completions.list(metadata={"reviewed": "yes", "run": run})] == [
        kept.id
    ]

    deleted = ana.chat.completions.delete(kept.id)
    assert deleted.deleted and deleted.id == kept.id and deleted.object == "chat.completion.deleted"
    with pytest.raises(openai.NotFoundError):
        ana.chat.completions.retrieve(kept.id)
    assert [c.id for c in ana.chat.completions.list(metadata={"run": run})] == [streamed_id]


def test_pages_follow_after_in_either_order(served: tuple) -> None:
    ana = _client(served, "acme/ana")
    run = uuid.uuid4().hex
    ids = [
        ana.chat.completions.create(
            model=BUNDLED, messages=HI, max_tokens=2, store=True, metadata={"run": run},
        ).id
        for _ in range(3)
    ]  # fmt: skip
    page = ana.chat.completions.list(metadata={"run": run}, limit=2)
    assert [c.id for c in page.data] == ids[:2] and page.has_more
    assert [c.id for c in ana.chat.completions.list(metadata={"run": run}, limit=2)] == ids
    newest_first = ana.chat.completions.list(metadata={"run": run}, limit=2, order="desc")
    assert [c.id for c in newest_first] == ids[::-1]


def test_another_tenants_completion_is_not_found(served: tuple) -> None:
    ana, bob, gus = (_client(served, w) for w in ("acme/ana", "acme/bob", "globex/gus"))
    run = uuid.uuid4().hex
    mine = ana.chat.completions.create(
        model=BUNDLED, messages=HI, max_tokens=2, store=True, metadata={"run": run}
    )
    for call in (
        lambda: gus.chat.completions.retrieve(mine.id),
        lambda: gus.chat.completions.messages.list(mine.id),
        lambda: gus.chat.completions.update(mine.id, metadata={"x": "y"}),
        lambda: gus.chat.completions.delete(mine.id),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert list(gus.chat.completions.list(metadata={"run": run})) == []
    # Another person of the same tenant sees it: stored completions are the tenant's.
    assert bob.chat.completions.retrieve(mine.id).id == mine.id


def test_storing_is_not_consent_and_erasure_removes_it(served: tuple) -> None:
    eve, bob = _client(served, "acme/eve"), _client(served, "acme/bob")
    raw = eve.chat.completions.with_raw_response.create(
        model=BUNDLED, messages=HI, max_tokens=2, store=True,
        metadata={"run": uuid.uuid4().hex},
    )  # fmt: skip
    kept, capture_id = raw.parse(), raw.headers["x-openclone-capture-id"]
    store = open_store(None, _home(served))
    try:
        with store.session() as s:
            capture = s.get(Capture, capture_id)
            assert capture is not None and capture.consent is False  # acme never opted in
        erase(store, actor="test", tenant="acme", user="eve")
    finally:
        store.close()
    with pytest.raises(openai.NotFoundError):
        bob.chat.completions.retrieve(kept.id)


def test_bad_store_fields_are_400s(served: tuple) -> None:
    server, keys = served
    ana = _client(served, "acme/ana")
    too_many = {f"k{i}": "v" for i in range(17)}
    for extra, param in (
        ({"store": True, "metadata": too_many}, "metadata"),
        ({"store": True, "metadata": {"k": 1}}, "metadata"),
        ({"store": True, "metadata": {"k": "v" * 513}}, "metadata"),
        ({"store": "yes"}, "store"),
    ):
        with pytest.raises(openai.BadRequestError) as exc:
            ana.chat.completions.create(model=BUNDLED, messages=HI, max_tokens=1, extra_body=extra)
        assert exc.value.body["param"] == param  # type: ignore[index]
    headers = {"Authorization": f"Bearer {keys['acme/ana']}"}
    r = httpx.get(server.base_url + "/chat/completions?colour=red", headers=headers)
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_parameter"
    r = httpx.get(server.base_url + "/chat/completions?limit=1000", headers=headers)
    assert r.status_code == 400
    mine = ana.chat.completions.create(model=BUNDLED, messages=HI, max_tokens=1, store=True)
    r = httpx.post(f"{server.base_url}/chat/completions/{mine.id}", headers=headers,
                   json={"metadata": {}, "colour": "red"})  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["param"] == "colour"
    r = httpx.post(f"{server.base_url}/chat/completions/{mine.id}", headers=headers, json={})
    assert r.status_code == 400 and r.json()["error"]["param"] == "metadata"


def test_lone_surrogate_in_updated_metadata_is_400_and_not_kept(served: tuple) -> None:
    # Kept, it made the update answer and every later read of the completion a 500.
    server, keys = served
    ana = _client(served, "acme/ana")
    mine = ana.chat.completions.create(model=BUNDLED, messages=HI, max_tokens=1, store=True)
    headers = {"Authorization": f"Bearer {keys['acme/ana']}", "Content-Type": "application/json"}
    for body in (b'{"metadata": {"k": "x\\ud800"}}', b'{"metadata": {"x\\udc00": "v"}}'):
        r = httpx.post(f"{server.base_url}/chat/completions/{mine.id}", headers=headers,
                       content=body)  # fmt: skip
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "invalid_unicode"
    assert ana.chat.completions.retrieve(mine.id).metadata == {}
