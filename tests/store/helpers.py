"""Exchanges as the gateway would hand them to the capture writer, and small readers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from openclone.gateway.capture import new_capture_id
from openclone.schema import Usage
from openclone.store import Store
from openclone.store.accounts import Principal
from openclone.store.exchange import Exchange
from openclone.store.tables import Capture
from openclone.store.writer import CaptureWriter

ANA = Principal("acme", "ana", None, "user")
BOB = Principal("acme", "bob", None, "user")
ANA_AT_GLOBEX = Principal("globex", "ana", None, "user")


def exchange(
    text: str,
    answer: str = "Sure.",
    *,
    tenant: str = "acme",
    user: str | None = "ana",
    conversation: str | None = None,
    train: bool | None = None,
    history: list[dict[str, Any]] | None = None,
    system: str | None = None,
    model: str = "m",
    created: float | None = None,
    status: int = 200,
) -> Exchange:
    messages = [*(history or []), {"role": "user", "content": text}]
    if system is not None:
        messages.insert(0, {"role": "system", "content": system})
    response = {
        "id": "x",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": "stop",
            }
        ],
    }
    ex = Exchange(
        id=new_capture_id(),
        endpoint="chat",
        model=model,
        request={"model": model, "messages": messages},
        response=response if status == 200 else {"error": {"message": "engine failed"}},
        status=status,
        latency_ms=12.5,
        stream=False,
        replica="m#0",
        usage=Usage(prompt_tokens=5, completion_tokens=2, total_tokens=7),
        tenant=tenant,
        user=user,
        conversation=conversation,
        train=train,
    )
    if created is not None:
        ex.created = created
    return ex


def write(store: Store, *exchanges: Exchange) -> CaptureWriter:
    """Write through a real writer and close it (which commits everything)."""
    writer = CaptureWriter(store)
    for ex in exchanges:
        writer.submit(ex)
    writer.close()
    return writer


def capture_ids(store: Store) -> set[str]:
    with store.session() as s:
        return set(s.scalars(select(Capture.id)))


def count_captures(store: Store) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(Capture)) or 0)


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
