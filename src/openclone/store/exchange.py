"""What capture records: one finished exchange, as the gateway saw it.

The gateway builds an :class:`Exchange` after each answer (a streamed one assembled) and hands
it to its capture sink; the store's writer is that sink. The type lives in the store, which
owns what a capture holds, so that the store never imports the gateway.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from openclone.schema import Usage

__all__ = ["Exchange"]


@dataclass
class Exchange:
    id: str
    endpoint: str  # "chat" | "completions"
    model: str
    request: dict[str, Any]
    response: dict[str, Any] | None
    status: int
    latency_ms: float
    stream: bool
    replica: str | None = None
    usage: Usage | None = None
    tenant: str | None = None
    user: str | None = None
    key_id: str | None = None
    conversation: str | None = None  # X-OpenClone-Conversation
    # Whether ``user`` is the key's own person. False when a shared key names the person in
    # the body's ``user``: the capture is theirs (their consent applies), but a shared key
    # may not write into their conversations, so the conversation is the key's (tenant's).
    user_from_key: bool = True
    train: bool | None = None  # X-OpenClone-Train, when the request says
    created: float = field(default_factory=time.time)
    # The client asked to keep it (``store: true``): it is also a stored chat completion,
    # listed under the id the client was answered with and these metadata. Nothing to do
    # with consent to training, which ``train`` and the person's choice decide.
    store: bool = False
    metadata: dict[str, str] | None = None
