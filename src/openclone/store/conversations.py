"""Conversations of the chat UI and of API clients that name one (``X-OpenClone-Conversation``).

Every function is scoped by owner (tenant and user): another person's conversation is
"not found", never shown or changed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from openclone.errors import APIError, InvalidRequestError
from openclone.store.accounts import Principal, tenant_by_name, user_by_name
from openclone.store.db import Store
from openclone.store.tables import Capture, Conversation, Feedback, Message, Tenant, User, now

__all__ = [
    "ConversationNotFound",
    "ConversationView",
    "append_exchange",
    "create_conversation",
    "delete_conversation",
    "get_conversation",
    "list_conversations",
    "truncate_conversation",
    "update_conversation",
]

log = logging.getLogger("openclone.store")


class ConversationNotFound(APIError):
    status_code = 404
    error_type = "invalid_request_error"


@dataclass
class ConversationView:
    id: str
    title: str
    model: str | None
    system_prompt: str
    temperature: float | None
    created: float
    updated: float
    messages: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _view(c: Conversation, messages: list[Message] | None = None) -> ConversationView:
    return ConversationView(
        c.id, c.title, c.model, c.system_prompt, c.temperature, c.created, c.updated,
        [
            {"role": m.role, "content": m.content, "capture_id": m.capture_id, "model": m.model}
            for m in messages or []
        ],
    )  # fmt: skip


def _owner(s: Session, who: Principal) -> tuple[Tenant, User | None]:
    tenant = tenant_by_name(s, who.tenant)
    assert tenant is not None
    return tenant, user_by_name(s, tenant, who.user) if who.user else None


def _owned(s: Session, who: Principal, conversation_id: str) -> Conversation:
    tenant, user = _owner(s, who)
    c = s.get(Conversation, conversation_id)
    if c is None or c.tenant_id != tenant.id or c.user_id != (user.id if user else None):
        raise ConversationNotFound(f"no conversation {conversation_id!r}", param="id")
    return c


def create_conversation(
    store: Store,
    who: Principal,
    *,
    title: str = "",
    model: str | None = None,
    system_prompt: str = "",
    temperature: float | None = None,
) -> ConversationView:
    with store.session() as s:
        tenant, user = _owner(s, who)
        c = Conversation(
            tenant_id=tenant.id,
            user_id=user.id if user else None,
            title=title[:256],
            model=model,
            system_prompt=system_prompt,
            temperature=temperature,
        )
        s.add(c)
        s.flush()
        return _view(c)


def list_conversations(
    store: Store, who: Principal, query: str | None = None, limit: int = 200
) -> list[ConversationView]:
    """Newest first; ``query`` matches titles and message text (case-insensitive)."""
    with store.session() as s:
        tenant, user = _owner(s, who)
        mine = Conversation.user_id == user.id if user else Conversation.user_id.is_(None)
        q = select(Conversation).where(Conversation.tenant_id == tenant.id, mine)
        if query:
            like = f"%{query.lower()}%"
            hits = select(Message.conversation_id).where(func.lower(Message.content).like(like))
            q = q.where(or_(func.lower(Conversation.title).like(like), Conversation.id.in_(hits)))
        rows = s.scalars(q.order_by(Conversation.updated.desc()).limit(limit))
        return [_view(c) for c in rows]


def get_conversation(store: Store, who: Principal, conversation_id: str) -> ConversationView:
    with store.session() as s:
        c = _owned(s, who, conversation_id)
        msgs = list(
            s.scalars(
                select(Message).where(Message.conversation_id == c.id).order_by(Message.position)
            )
        )
        view = _view(c, msgs)
        ids = [m.capture_id for m in msgs if m.capture_id]
        if ids:  # the person's own thumbs, so the page shows what they chose
            q = select(Feedback.capture_id, Feedback.rating).where(Feedback.capture_id.in_(ids))
            rated = {cid: r for cid, r in s.execute(q)}
            for m in view.messages:
                if m["capture_id"] in rated:
                    m["rating"] = rated[m["capture_id"]]
        return view


def update_conversation(
    store: Store, who: Principal, conversation_id: str, **changes: Any
) -> ConversationView:
    allowed = {"title", "model", "system_prompt", "temperature"}
    if bad := set(changes) - allowed:
        raise InvalidRequestError(f"cannot change {', '.join(sorted(bad))}")
    if (t := changes.get("temperature")) is not None and not 0 <= t <= 2:
        raise InvalidRequestError("temperature must be between 0 and 2", param="temperature")
    with store.session() as s:
        c = _owned(s, who, conversation_id)
        for k, v in changes.items():
            setattr(c, k, v[:256] if k == "title" and isinstance(v, str) else v)
        c.updated = now()
        return _view(c)


def truncate_conversation(store: Store, who: Principal, conversation_id: str, keep: int) -> None:
    """Keep the first ``keep`` messages (edit and resend, regenerate)."""
    with store.session() as s:
        c = _owned(s, who, conversation_id)
        s.execute(delete(Message).where(Message.conversation_id == c.id, Message.position >= keep))
        c.updated = now()


def delete_conversation(store: Store, who: Principal, conversation_id: str) -> None:
    """The conversation and its messages; its captures go only through erasure (they may
    be in datasets, and erasure is what records that)."""
    with store.session() as s:
        c = _owned(s, who, conversation_id)
        s.execute(delete(Message).where(Message.conversation_id == c.id))
        s.delete(c)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def append_exchange(
    s: Session,
    tenant: Tenant,
    user: User | None,
    conversation_id: str,
    capture_id: str,
    request: dict[str, Any],
    response: dict[str, Any] | None,
    model: str,
) -> None:
    """Make the conversation hold the request's turns plus the answer (the client sends the
    whole history each time, so an edit or a regenerate simply replaces the tail)."""
    c = s.get(Conversation, conversation_id)
    if c is None:
        c = Conversation(id=conversation_id, tenant_id=tenant.id, user_id=user.id if user else None)
        s.add(c)
        s.flush()
    elif c.tenant_id != tenant.id or c.user_id != (user.id if user else None):
        log.warning("capture %s names another person's conversation; not appended", capture_id)
        return
    turns = [
        (m.get("role", "user"), _text(m.get("content")))
        for m in request.get("messages", [])
        if isinstance(m, dict) and m.get("role") in ("user", "assistant")
    ]
    choices = (response or {}).get("choices") or []
    answer = _text((choices[0].get("message") or {}).get("content")) if choices else ""
    existing = list(
        s.scalars(select(Message).where(Message.conversation_id == c.id).order_by(Message.position))
    )
    same = 0
    for m, (role, content) in zip(existing, turns, strict=False):
        if m.role != role or m.content != content:
            break
        same += 1
    for m in existing[same:]:
        s.delete(m)
    for i, (role, content) in enumerate(turns[same:], start=same):
        s.add(Message(conversation_id=c.id, position=i, role=role, content=content))
    s.add(
        Message(
            conversation_id=c.id,
            position=len(turns),
            role="assistant",
            content=answer,
            model=model,
            capture_id=capture_id,
        )
    )
    if not c.title and turns:
        c.title = next((t for r, t in turns if r == "user"), "")[:80]
    c.model = model
    c.updated = now()
    if system := next(
        (
            m
            for m in request.get("messages", [])
            if isinstance(m, dict) and m.get("role") == "system"
        ),
        None,
    ):
        c.system_prompt = _text(system.get("content"))


def owned_capture(s: Session, who: Principal, capture_id: str) -> Capture:
    tenant, user = _owner(s, who)
    cap = s.get(Capture, capture_id)
    if cap is None or cap.tenant_id != tenant.id or cap.user_id != (user.id if user else None):
        raise ConversationNotFound(f"no answer {capture_id!r} of yours", param="capture_id")
    return cap
