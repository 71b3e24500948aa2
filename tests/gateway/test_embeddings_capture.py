"""Embeddings are captured like chat: tenant, person, consent, redaction, encryption at rest,
erasure — through a real server and the openai SDK — and never read as training data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import BUNDLED, start_tenant_server, stop_server
from sqlalchemy import select

from openclone.store import open_store
from openclone.store.export import (
    CaptureFilter,
    export_captures,
    iter_captured_prompt_ids,
    search_captures,
)
from openclone.store.privacy import erase
from openclone.store.sealed import open_exchange
from openclone.store.tables import Capture, Tenant, User

pytestmark = pytest.mark.slow

SECRET = "Invoice 7731 for ana@example.com is overdue"
TRAIN = {"X-OpenClone-Train": "true"}


def _captures(home: Path) -> dict[str, dict[str, Any]]:
    """Each capture as the store's readers open it, with its raw (stored) request."""
    store = open_store(home=home)
    try:
        with store.session() as s:
            q = (
                select(Capture, Tenant.name, User.name)
                .join(Tenant, Capture.tenant_id == Tenant.id)
                .outerjoin(User, Capture.user_id == User.id)
            )
            out = {}
            for c, tenant, user in s.execute(q):
                raw = json.dumps(c.request)
                request, response = open_exchange(s, c)
                out[c.id] = {
                    "endpoint": c.endpoint, "tenant": tenant, "user": user,
                    "consent": c.consent, "request": request, "response": response,
                    "raw": raw, "prompt_tokens": c.prompt_tokens, "redactions": c.redactions,
                }  # fmt: skip
            return out
    finally:
        store.close()


def test_embeddings_are_captured_like_chat_and_never_trained_on(tmp_path: Path) -> None:
    ts = start_tenant_server(tmp_path)
    try:
        acme, globex = ts.client("acme"), ts.client("globex")
        raw = acme.embeddings.with_raw_response.create(
            model=BUNDLED, input=[SECRET, "second text"], extra_headers=TRAIN
        )
        consented = raw.headers["x-openclone-capture-id"]
        vectors = raw.parse()
        out = acme.embeddings.with_raw_response.create(
            model=BUNDLED, input="no training on this", extra_headers={"X-OpenClone-Train": "no"}
        )
        refused = out.headers["x-openclone-capture-id"]
        theirs = globex.embeddings.with_raw_response.create(
            model=BUNDLED, input="globex text", extra_headers=TRAIN
        ).headers["x-openclone-capture-id"]
        # An embedding is not a stored completion, even when consented.
        assert acme.chat.completions.list().data == []
    finally:
        stop_server(ts.server)  # a clean shutdown commits the capture queue

    caps = _captures(ts.home)
    cap = caps[consented]
    assert (cap["endpoint"], cap["tenant"], cap["user"], cap["consent"]) == (
        "embeddings", "acme", "ana", True
    )  # fmt: skip
    # The texts, redacted at store time; of the answer only its description, no vectors.
    assert cap["request"]["input"][1] == "second text"
    assert "ana@example.com" not in cap["request"]["input"][0]
    assert "Invoice 7731" in cap["request"]["input"][0] and cap["redactions"]
    assert cap["response"] == {
        "object": "list", "model": BUNDLED, "count": 2, "dimensions": 576,
        "usage": vectors.usage.model_dump(),
    }  # fmt: skip
    assert cap["prompt_tokens"] == vectors.usage.prompt_tokens > 0
    assert "Invoice" not in cap["raw"]  # sealed at rest
    assert caps[refused]["consent"] is False
    assert (caps[theirs]["tenant"], caps[theirs]["consent"]) == ("globex", True)

    store = open_store(home=ts.home)
    try:
        # Training reads chat exchanges only: a consented embedding is no prompt or row...
        assert list(iter_captured_prompt_ids(store)) == []
        exported = export_captures(store, tmp_path / "out.jsonl", CaptureFilter())
        assert exported.rows == 0
        # ...but it is found, to be erased, and a person's erasure takes it.
        assert [c.id for c in search_captures(store, "invoice 7731")] == [consented]
        erase(store, actor="test", tenant="acme", user="ana")
    finally:
        store.close()
    assert set(_captures(ts.home)) == {theirs}
