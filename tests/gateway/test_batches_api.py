"""The Batch API of a real server process, driven by the official openai client: requests
answered in the background through the chat, responses and embeddings paths (captured like
any request), output and error files in input order, cancel, deadline, tenants apart."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from conftest import BUNDLED, TenantServer, start_tenant_server, stop_server
from openai import OpenAI
from openai.types import Batch
from sqlalchemy import func, select, update

from openclone.store import open_store
from openclone.store.sealed import seal_batch_result
from openclone.store.tables import Batch as BatchRow
from openclone.store.tables import BatchResult, Capture, Tenant

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TenantServer]:
    env = start_tenant_server(tmp_path_factory.mktemp("batches"))
    yield env
    stop_server(env.server)


def chat(custom_id: str, text: str = "Say hi.", **body: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": BUNDLED, "messages": [{"role": "user", "content": text}],
                     "max_tokens": 8, "temperature": 0, **body}}  # fmt: skip


def upload(client: OpenAI, rows: list[dict[str, Any]]) -> str:
    data = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    return client.files.create(file=("requests.jsonl", data), purpose="batch").id


def wait(client: OpenAI, batch_id: str, timeout: float = 300) -> Batch:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            return batch
        assert time.monotonic() < deadline, batch
        time.sleep(0.3)


def lines(client: OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(x) for x in client.files.content(file_id).text.splitlines()]


def test_a_chat_batch_answers_every_line_in_order(env: TenantServer) -> None:
    client = env.client()
    rows = [chat("a", "Name a colour."), chat("b", "Name a fruit."), chat("c", "Count to three."),
            {**chat("bad"), "body": {"messages": [{"role": "user", "content": "x"}]}},
            chat("unknown-model", model="no-such-model")]  # fmt: skip
    created = client.batches.create(
        input_file_id=upload(client, rows), endpoint="/v1/chat/completions",
        completion_window="24h", metadata={"job": "nightly"},
    )  # fmt: skip
    assert created.status in ("validating", "in_progress") and created.metadata == {
        "job": "nightly"
    }
    assert created.expires_at == created.created_at + 24 * 3600
    done = wait(client, created.id)
    assert done.status == "completed", done
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed,
            done.request_counts.failed) == (5, 3, 2)  # fmt: skip
    assert done.completed_at and done.in_progress_at
    out = lines(client, done.output_file_id)
    assert [o["custom_id"] for o in out] == ["a", "b", "c"]
    for o in out:
        assert o["response"]["status_code"] == 200 and o["error"] is None
        body = o["response"]["body"]
        assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"]
    # The same answer a live request gets (greedy decoding).
    live = client.chat.completions.create(
        model=BUNDLED, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=8,
        temperature=0,
    )  # fmt: skip
    assert out[0]["response"]["body"]["choices"][0]["message"]["content"] == (
        live.choices[0].message.content
    )
    errors = {e["custom_id"]: e for e in lines(client, done.error_file_id)}
    assert errors["bad"]["response"]["status_code"] == 400
    assert errors["bad"]["response"]["body"]["error"]["param"] == "model"
    assert errors["unknown-model"]["response"]["status_code"] == 404
    assert client.files.retrieve(done.output_file_id or "").purpose == "batch_output"
    with pytest.raises(openai.BadRequestError):
        client.batches.cancel(done.id)  # it is over
    assert done.usage is not None and done.usage.output_tokens > 0
    # Each answered request was captured like any other, for the batch's tenant (the
    # capture writer commits in the background: give it a moment).
    assert _captures(env.home, "acme", at_least=4) >= 4  # three batch answers, the live one


def _captures(home: Path, tenant: str, at_least: int, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while True:
        store = open_store(home=home)
        try:
            with store.session() as s:
                n = s.scalar(
                    select(func.count())
                    .select_from(Capture)
                    .join(Tenant, Tenant.id == Capture.tenant_id)
                    .where(Tenant.name == tenant, Capture.status == 200)
                )
        finally:
            store.close()
        if (n or 0) >= at_least or time.monotonic() > deadline:
            return n or 0
        time.sleep(0.2)


def test_responses_and_embeddings_batches(env: TenantServer) -> None:
    client = env.client()
    responses = client.batches.create(
        input_file_id=upload(client, [{"custom_id": "r1", "method": "POST", "url": "/v1/responses",
                                       "body": {"model": BUNDLED, "input": "Say hi.",
                                                "max_output_tokens": 8}}]),
        endpoint="/v1/responses", completion_window="24h",
    )  # fmt: skip
    embeddings = client.batches.create(
        input_file_id=upload(client, [{"custom_id": "e1", "method": "POST", "url": "/v1/embeddings",
                                       "body": {"model": BUNDLED, "input": ["one", "two"]}}]),
        endpoint="/v1/embeddings", completion_window="24h",
    )  # fmt: skip
    (r,) = lines(client, wait(client, responses.id).output_file_id)
    assert r["custom_id"] == "r1" and r["response"]["body"]["object"] == "response"
    (e,) = lines(client, wait(client, embeddings.id).output_file_id)
    data = e["response"]["body"]["data"]
    assert len(data) == 2 and len(data[0]["embedding"]) > 0


def test_cancel_keeps_what_was_answered(env: TenantServer) -> None:
    client = env.client()
    rows = [chat(f"q{i}", f"Write a long story number {i}.", max_tokens=64) for i in range(20)]
    batch = client.batches.create(
        input_file_id=upload(client, rows), endpoint="/v1/chat/completions",
        completion_window="24h",
    )  # fmt: skip
    assert client.batches.cancel(batch.id).status == "cancelling"
    done = wait(client, batch.id)
    assert done.status == "cancelled" and done.cancelled_at and done.cancelling_at
    answered = lines(client, done.output_file_id)
    stopped = lines(client, done.error_file_id)
    assert stopped and all(s["error"]["code"] == "batch_cancelled" for s in stopped)
    assert sorted(x["custom_id"] for x in answered + stopped) == sorted(
        r["custom_id"] for r in rows
    )
    assert client.batches.cancel(batch.id).status == "cancelled"  # again: nothing changes


def test_the_completion_window_is_a_deadline(env: TenantServer) -> None:
    client = env.client()
    rows = [chat(f"q{i}", f"Write a long story number {i}.", max_tokens=64) for i in range(20)]
    batch = client.batches.create(
        input_file_id=upload(client, rows), endpoint="/v1/chat/completions",
        completion_window="24h",
    )  # fmt: skip
    # The deadline passes (as if 24 hours had gone by): the store's record is what counts.
    store = open_store(home=env.home)
    try:
        with store.session() as s:
            s.execute(
                update(BatchRow).where(BatchRow.id == batch.id).values(expires_at=time.time())
            )
    finally:
        store.close()
    done = wait(client, batch.id)
    assert done.status == "expired" and done.expired_at
    expired = lines(client, done.error_file_id)
    assert expired and all(x["error"]["code"] == "batch_expired" for x in expired)
    answered = lines(client, done.output_file_id)
    assert len(answered) + len(expired) == len(rows)
    assert done.request_counts is not None and done.request_counts.failed == len(expired)


def test_a_batch_whose_gateway_died_is_taken_over_without_redoing_lines(
    env: TenantServer,
) -> None:
    client = env.client()
    file_id = upload(client, [chat("done-elsewhere"), chat("left", "Name a colour.")])
    answer = {"id": "batch_req_dead", "custom_id": "done-elsewhere", "error": None,
              "response": {"status_code": 200, "body": {"answered_by": "the dead gateway"}}}  # fmt: skip
    # Another gateway on this store claimed the batch, answered line 1 and died: its lease
    # ran out a moment ago.
    store = open_store(home=env.home)
    try:
        with store.session() as s:
            tenant_id = s.scalar(select(Tenant.id).where(Tenant.name == "acme"))
            assert tenant_id is not None
            t = time.time()
            row = BatchRow(
                id="batch_" + secrets.token_hex(12), tenant_id=tenant_id,
                caller={"user": "ana", "key_id": None, "scope": "user"},
                endpoint="/v1/chat/completions", input_file_id=file_id, completion_window="24h",
                status="in_progress", total=2, completed=1, failed=0, usage={}, created=t,
                expires_at=t + 3600, in_progress_at=t, lease_owner="a-gateway-that-died",
                lease_until=t - 1,
            )  # fmt: skip
            s.add(row)
            s.flush()
            body = seal_batch_result(s, tenant_id, row.id, 1, answer)
            s.add(BatchResult(batch_id=row.id, line=1, ok=True, body=body))
    finally:
        store.close()
    done = wait(client, row.id)
    assert done.status == "completed" and done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (2, 0)
    first, second = lines(client, done.output_file_id)
    assert first == answer  # kept as the dead gateway answered it, not asked again
    assert second["custom_id"] == "left" and second["response"]["status_code"] == 200


def test_batches_are_the_tenants_own(env: TenantServer) -> None:
    acme, globex = env.client("acme"), env.client("globex")
    file_id = upload(acme, [chat("a")])
    batch = acme.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    for call in (globex.batches.retrieve, globex.batches.cancel):
        with pytest.raises(openai.NotFoundError):
            call(batch.id)
    assert batch.id not in [b.id for b in globex.batches.list()]
    assert batch.id in [b.id for b in acme.batches.list()]
    with pytest.raises(openai.NotFoundError):
        globex.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    wait(acme, batch.id)


def test_what_a_batch_cannot_be_is_a_400(env: TenantServer) -> None:
    client = env.client()
    file_id = upload(client, [chat("a"), {**chat("b"), "url": "/v1/embeddings"}])
    with pytest.raises(openai.BadRequestError, match="Line 2"):
        client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    ok = upload(client, [chat("a")])
    with pytest.raises(openai.BadRequestError, match="completion_window"):
        client.batches.create(
            input_file_id=ok,
            endpoint="/v1/chat/completions",
            completion_window="1h",  # type: ignore[arg-type]
        )
    with pytest.raises(openai.BadRequestError) as info:
        client.batches.create(input_file_id=ok, endpoint="/v1/completions", completion_window="24h")
    assert isinstance(info.value.body, dict) and info.value.body["code"] == "unsupported_parameter"
    tuning = client.files.create(
        file=("t.jsonl", b'{"messages": [{"role": "user", "content": "q"}, '
                         b'{"role": "assistant", "content": "a"}]}\n'),
        purpose="fine-tune",
    )  # fmt: skip
    with pytest.raises(openai.BadRequestError, match="purpose"):
        client.batches.create(
            input_file_id=tuning.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")
