"""Exchanges as the gateway would hand them to the capture writer."""

from __future__ import annotations

from typing import Any

from openclone.gateway.capture import Exchange, new_capture_id
from openclone.schema import Usage


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
) -> Exchange:
    messages = [*(history or []), {"role": "user", "content": text}]
    if system is not None:
        messages.insert(0, {"role": "system", "content": system})
    ex = Exchange(
        id=new_capture_id(),
        endpoint="chat",
        model=model,
        request={"model": model, "messages": messages},
        response={
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
        },
        status=200,
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
