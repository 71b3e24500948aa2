"""The Files API of a real server process, driven by the official openai client: uploads
checked line by line as OpenAI checks them, paging, content, deletion, tenants apart."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest
from conftest import BUNDLED, TenantServer, start_tenant_server, stop_server
from openai import OpenAI

pytestmark = pytest.mark.slow


def chat_row(question: str, answer: str) -> dict[str, object]:
    return {
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]
    }


def jsonl(rows: list[object]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TenantServer]:
    config = "max_body_bytes = 4096\nmax_file_bytes = 65536\n"
    env = start_tenant_server(tmp_path_factory.mktemp("files"), config)
    yield env
    stop_server(env.server)


def _client(tenants: TenantServer, tenant: str) -> OpenAI:
    return tenants.client(tenant)


def test_upload_list_retrieve_content_delete(tenants: TenantServer) -> None:
    acme = _client(tenants, "acme")
    data = jsonl([chat_row(f"q{i}", f"a{i}") for i in range(3)])
    up = acme.files.create(file=("train.jsonl", data), purpose="fine-tune")
    assert up.object == "file" and up.id.startswith("file-")
    assert (up.bytes, up.filename, up.purpose, up.status) == (len(data), "train.jsonl",
                                                              "fine-tune", "processed")  # fmt: skip
    batch = acme.files.create(file=("requests.jsonl", jsonl([_request("a")])), purpose="batch")
    assert acme.files.retrieve(up.id).model_dump() == up.model_dump()
    assert acme.files.content(up.id).content == data

    # Newest first; a purpose filter; paging with `after`, as the SDK's auto-pager does.
    assert [f.id for f in acme.files.list()] == [batch.id, up.id]
    assert [f.id for f in acme.files.list(purpose="fine-tune")] == [up.id]
    first = acme.files.list(limit=1)
    assert [f.id for f in first.data] == [batch.id] and first.has_more
    assert [f.id for f in acme.files.list(limit=1, after=batch.id).data] == [up.id]
    assert [f.id for f in acme.files.list(limit=1)] == [batch.id, up.id]  # auto-paging
    assert [f.id for f in acme.files.list(order="asc")] == [up.id, batch.id]

    deleted = acme.files.delete(batch.id)
    assert (deleted.id, deleted.deleted) == (batch.id, True)
    with pytest.raises(openai.NotFoundError, match="No such File object"):
        acme.files.retrieve(batch.id)
    with pytest.raises(openai.NotFoundError):
        acme.files.delete(batch.id)
    assert [f.id for f in acme.files.list()] == [up.id]


def test_an_uploaded_file_is_sealed_on_disk_and_reads_back(tenants: TenantServer) -> None:
    acme = _client(tenants, "acme")
    marker = "ZQX-upload-canary-6690"
    data = jsonl([chat_row(f"our pricing plan {marker}", f"the answer {marker}")])
    up = acme.files.create(file=("secret.jsonl", data), purpose="fine-tune")
    assert acme.files.content(up.id).content == data
    # The database, its write-ahead log and everything else in the home: no plain text.
    on_disk = [p for p in tenants.home.rglob("*") if p.is_file()]
    assert any(p.name == "master.key" for p in on_disk)  # a new home encrypts
    assert not [p for p in on_disk if marker.encode() in p.read_bytes()]


def test_another_tenants_file_is_not_found(tenants: TenantServer) -> None:
    acme, globex = _client(tenants, "acme"), _client(tenants, "globex")
    mine = acme.files.create(file=("t.jsonl", jsonl([chat_row("q", "a")])), purpose="fine-tune")
    for call in (globex.files.retrieve, globex.files.content, globex.files.delete):
        with pytest.raises(openai.NotFoundError):
            call(mine.id)
    assert mine.id not in [f.id for f in globex.files.list()]
    assert acme.files.retrieve(mine.id).id == mine.id  # still there for its owner


def _request(custom_id: str, **overrides: object) -> dict[str, object]:
    body = {"model": BUNDLED, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": body, **overrides}  # fmt: skip


BAD_FINE_TUNE = [
    ([chat_row("q", "a"), "not json"], 2, "not valid JSON"),
    ([chat_row("q", "a"), ["a list"]], 2, "JSON object"),
    ([{"prompt": "q", "completion": "a"}], 1, "legacy format"),
    ([{"input": {}, "preferred_output": [], "non_preferred_output": []}], 1, "DPO"),
    ([chat_row("q", "a"), {"messages": []}], 2, "non-empty list"),
    ([chat_row("q", "a"), chat_row("q", "a"), {"messages": [{"role": "bot", "content": "x"}]}],
     3, "messages[0].role must be one of"),
    ([{"messages": [{"role": "user", "content": "only a question"}]}], 1, "no assistant message"),
    ([{"messages": [{"role": "user", "content": "q"},
                    {"role": "assistant", "content": "a", "weight": 0}]}], 1, "no assistant"),
    ([{"messages": [{"role": "user", "content": "q", "weight": 1},
                    {"role": "assistant", "content": "a"}]}], 1, "only allowed on assistant"),
    ([{"messages": [{"role": "user"}, {"role": "assistant", "content": "a"}]}], 1,
     "messages[0].content is missing"),
    ([{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]},
                    {"role": "assistant", "content": "a"}]}], 1, "only text"),
]  # fmt: skip

BAD_BATCH = [
    ([_request("a"), _request("a")], 2, "custom_id 'a' is already used on line 1"),
    ([_request("a", method="GET")], 1, "'method' must be POST"),
    ([_request("a", url="/v1/images/generations")], 1, "'url' must be one of"),
    ([{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions"}], 1, "'body'"),
    ([_request("a", body="text")], 1, "'body' must be a JSON object"),
    ([_request("a"), _request("b", body={"stream": True})], 2, "stream"),
    ([_request("")], 1, "non-empty string"),
]


@pytest.mark.parametrize(("rows", "line", "why"), BAD_FINE_TUNE)
def test_a_bad_fine_tuning_file_is_refused_naming_the_line(
    tenants: TenantServer, rows: list[object], line: int, why: str
) -> None:
    data = b"".join((r if isinstance(r, str) else json.dumps(r)).encode() + b"\n" for r in rows)
    _refused(tenants, data, "fine-tune", line, why)


@pytest.mark.parametrize(("rows", "line", "why"), BAD_BATCH)
def test_a_bad_batch_file_is_refused_naming_the_line(
    tenants: TenantServer, rows: list[object], line: int, why: str
) -> None:
    _refused(tenants, jsonl(rows), "batch", line, why)


def _refused(tenants: TenantServer, data: bytes, purpose: str, line: int, why: str) -> None:
    acme = _client(tenants, "acme")
    with pytest.raises(openai.BadRequestError) as info:
        acme.files.create(file=("f.jsonl", data), purpose=purpose)  # type: ignore[arg-type]
    err = info.value.body
    assert isinstance(err, dict)
    assert err["code"] == "invalid_file_format" and err["param"] == "file"
    assert f"Line {line}:" in err["message"] and why in err["message"], err["message"]


def test_what_the_upload_cannot_be_is_a_clear_4xx(tenants: TenantServer) -> None:
    acme = _client(tenants, "acme")
    with pytest.raises(openai.BadRequestError, match="not supported by OpenClone"):
        acme.files.create(file=("a.txt", b"x"), purpose="assistants")
    with pytest.raises(openai.BadRequestError, match="Invalid value for 'purpose'"):
        acme.files.create(file=("a.txt", b"x"), purpose="fine-tune-results")  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match="no JSONL rows"):
        acme.files.create(file=("a.jsonl", b"\n\n"), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError, match="expires_after"):
        acme.files.create(
            file=("a.jsonl", jsonl([_request("a")])), purpose="batch",
            expires_after={"anchor": "created_at", "seconds": 5},
        )  # fmt: skip
    kept = acme.files.create(
        file=("a.jsonl", jsonl([_request("a")])), purpose="batch",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )  # fmt: skip
    assert kept.expires_at is not None and kept.expires_at - kept.created_at == 3600
    # Uploads have their own cap (max_file_bytes, 64 KiB in this server), larger here than
    # every other request's (max_body_bytes, 4 KiB): within it an upload passes, over it 413.
    fits = jsonl([chat_row("q" * 1000, "a")] * 20)
    assert 4096 < len(fits) < 65536
    assert acme.files.create(file=("fits.jsonl", fits), purpose="fine-tune").bytes == len(fits)
    big = jsonl([chat_row("q" * 1000, "a")] * 80)
    with pytest.raises(openai.APIStatusError) as info:
        acme.files.create(file=("big.jsonl", big), purpose="fine-tune")
    assert info.value.status_code == 413
    # Without a file, or not multipart at all: a 400, never a 500.
    server = tenants.server
    auth = {"Authorization": f"Bearer {tenants.keys['acme']}"}
    r = httpx.post(server.base_url + "/files", data={"purpose": "batch"}, headers=auth)
    assert r.status_code == 400 and r.json()["error"]["param"] == "file"
    r = httpx.post(server.base_url + "/files", json={"purpose": "batch"}, headers=auth)
    assert r.status_code == 400
    r = httpx.post(
        server.base_url + "/files", headers=auth,
        files={"file": ("a.jsonl", jsonl([_request("a")]))},
        data={"purpose": "batch", "colour": "blue"},
    )  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_parameter"
    # No key: 401 as everywhere else.
    r = httpx.get(server.base_url + "/files")
    assert r.status_code == 401
