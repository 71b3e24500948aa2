"""Conversations of the chat UI and of API clients that name one (``X-OpenClone-Conversation``).

Every function is scoped by owner (tenant and user): another person's conversation is
"not found", never shown or changed. Conversation ids are global; the UI's are uuids, and
an API client naming one should pick a unique name too (a name someone else already owns
is not shared: the capture is kept, the conversation is not appended to).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from openclone.errors import APIError, InvalidRequestError
from openclone.store.accounts import Principal, ensure_tenant, ensure_user, find_tenant, find_user
from openclone.store.db import Store
from openclone.store.scrub import clean_text
from openclone.store.sealed import (
    open_conversation,
    open_message,
    seal_message,
    seal_title_and_prompt,
)
from openclone.store.tables import (
    Capture,
    Conversation,
    Feedback,
    Message,
    Tenant,
    User,
    new_id,
    now,
)

__all__ = [
    "CONVERSATION_ID_MAX",
    "ConversationNotFound",
    "ConversationView",
    "append_exchange",
    "claim_conversation",
    "create_conversation",
    "delete_conversation",
    "get_conversation",
    "list_conversations",
    "owned_capture",
    "search_conversations",
    "truncate_conversation",
    "update_conversation",
]

log = logging.getLogger("openclone.store")
CONVERSATION_ID_MAX = 64
TITLE_MAX = 256


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


def _view(s: Session, c: Conversation, messages: list[Message] | None = None) -> ConversationView:
    title, system_prompt = open_conversation(s, c)
    return ConversationView(
        c.id, title, c.model, system_prompt, c.temperature, c.created, c.updated,
        [
            {"position": m.position, "role": m.role, "content": _content(s, c, m),
             "capture_id": m.capture_id, "model": m.model}
            for m in messages or []
        ],
    )  # fmt: skip


def _content(s: Session, c: Conversation, m: Message) -> str:
    return open_message(s, c.tenant_id, c.id, m.position, m.content)


def _owner(s: Session, who: Principal) -> tuple[Tenant, User | None] | None:
    """The caller's rows, or None when they have never been seen (so they own nothing)."""
    tenant = find_tenant(s, who.tenant)
    if tenant is None:
        return None
    if who.user is None:
        return tenant, None
    user = find_user(s, tenant, who.user)
    return None if user is None else (tenant, user)


def _is_owner(c: Conversation | Capture, tenant: Tenant, user: User | None) -> bool:
    return c.tenant_id == tenant.id and c.user_id == (user.id if user else None)


def _owned(s: Session, who: Principal, conversation_id: str) -> Conversation:
    owner = _owner(s, who)
    c = s.get(Conversation, conversation_id)
    if owner is None or c is None or not _is_owner(c, *owner):
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
    _check_temperature(temperature)
    with store.session() as s:
        tenant = ensure_tenant(s, who.tenant)
        user = ensure_user(s, tenant, who.user) if who.user is not None else None
        c = Conversation(
            id=new_id(),
            tenant_id=tenant.id,
            user_id=user.id if user else None,
            model=model,
            temperature=temperature,
        )
        seal_title_and_prompt(
            s, c, title=clean_text(title)[:TITLE_MAX], system_prompt=clean_text(system_prompt)
        )
        s.add(c)
        s.flush()
        return _view(s, c)


def list_conversations(
    store: Store, who: Principal, query: str | None = None, limit: int = 200
) -> list[ConversationView]:
    """The caller's conversations, most recently used first (without their messages);
    ``query`` keeps those whose title or any message contains it, ignoring case.

    The search runs here, not in SQL: titles and messages may be sealed (encrypted at
    rest), so each is opened and compared; it reads one person's conversations only."""
    with store.session() as s:
        owner = _owner(s, who)
        if owner is None:
            return []
        tenant, user = owner
        mine = Conversation.user_id == user.id if user else Conversation.user_id.is_(None)
        q = select(Conversation).where(Conversation.tenant_id == tenant.id, mine)
        q = q.order_by(Conversation.updated.desc())
        if not query:
            return [_view(s, c) for c in s.scalars(q.limit(limit))]
        convs = list(s.scalars(q))
        return [_view(s, c) for c in _matching(s, convs, query.lower())[:limit]]


def _matching(s: Session, convs: list[Conversation], needle: str) -> list[Conversation]:
    """The conversations whose title or any message contains ``needle`` (lower case)."""
    by_id = {c.id: c for c in convs}
    hits = {c.id for c in convs if needle in open_conversation(s, c)[0].lower()}
    rest = [cid for cid in by_id if cid not in hits]
    for i in range(0, len(rest), 500):  # ids per IN (...): well under every backend's limit
        q = select(Message.conversation_id, Message.position, Message.content).where(
            Message.conversation_id.in_(rest[i : i + 500])
        )
        for cid, position, content in s.execute(q):
            if cid in hits:
                continue
            text = open_message(s, by_id[cid].tenant_id, cid, position, content)
            if needle in text.lower():
                hits.add(cid)
    return [c for c in convs if c.id in hits]


def search_conversations(
    store: Store, who: Principal, query: str, limit: int = 200
) -> list[ConversationView]:
    """The caller's conversations whose title or messages contain ``query``."""
    return list_conversations(store, who, query, limit)


def get_conversation(store: Store, who: Principal, conversation_id: str) -> ConversationView:
    """One of the caller's conversations with its messages and the caller's ratings."""
    with store.session() as s:
        c = _owned(s, who, conversation_id)
        msgs = list(
            s.scalars(
                select(Message).where(Message.conversation_id == c.id).order_by(Message.position)
            )
        )
        view = _view(s, c, msgs)
        ids = [m.capture_id for m in msgs if m.capture_id]
        if ids:  # the person's own thumbs, so the page shows what they chose
            q = select(Feedback.capture_id, Feedback.rating).where(Feedback.capture_id.in_(ids))
            rated = {cid: r for cid, r in s.execute(q)}
            for m in view.messages:
                if m["capture_id"] in rated:
                    m["rating"] = rated[m["capture_id"]]
        return view


def _check_temperature(t: float | None) -> None:
    if t is not None and not 0 <= t <= 2:
        raise InvalidRequestError("temperature must be between 0 and 2", param="temperature")


def update_conversation(
    store: Store, who: Principal, conversation_id: str, **changes: Any
) -> ConversationView:
    """Rename, or set the model, system prompt or temperature (``None`` clears the last)."""
    allowed = {"title", "model", "system_prompt", "temperature"}
    if bad := set(changes) - allowed:
        raise InvalidRequestError(
            f"cannot change {', '.join(sorted(bad))}; only {', '.join(sorted(allowed))}"
        )
    _check_temperature(changes.get("temperature"))
    for k in ("title", "system_prompt"):
        if k in changes and not isinstance(changes[k], str):
            raise InvalidRequestError(f"{k} must be text", param=k)
    with store.session() as s:
        c = _owned(s, who, conversation_id)
        for k, v in changes.items():
            if k == "title":
                seal_title_and_prompt(s, c, title=clean_text(v)[:TITLE_MAX])
            elif k == "system_prompt":
                seal_title_and_prompt(s, c, system_prompt=clean_text(v))
            else:
                setattr(c, k, v)
        c.updated = now()
        return _view(s, c)


def truncate_conversation(store: Store, who: Principal, conversation_id: str, keep: int) -> None:
    """Keep the first ``keep`` messages, i.e. drop every position ``>= keep`` (edit and
    resend, regenerate). The dropped answers' captures stay (erasure removes those)."""
    if keep < 0:
        raise InvalidRequestError("keep must be 0 or more", param="keep")
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
        return clean_text(content)
    if isinstance(content, list):
        return clean_text(
            "".join(p.get("text", "") for p in content if isinstance(p, dict) and
                    isinstance(p.get("text"), str))
        )  # fmt: skip
    return ""


def claim_conversation(
    s: Session, tenant: Tenant, user: User | None, conversation_id: str, *, create: bool
) -> Conversation | None:
    """The named conversation if it is this person's (created when new and ``create``);
    None when someone else owns it or the id is unusable."""
    if not conversation_id or len(conversation_id) > CONVERSATION_ID_MAX:
        log.warning("conversation id of %d characters ignored (at most %d)",
                    len(conversation_id), CONVERSATION_ID_MAX)  # fmt: skip
        return None
    c = s.get(Conversation, conversation_id)
    if c is None:
        if not create:
            return None
        c = Conversation(id=conversation_id, tenant_id=tenant.id, user_id=user.id if user else None)
        s.add(c)
        s.flush()
        return c
    if not _is_owner(c, tenant, user):
        log.warning("an exchange names conversation %r of another person; not appended",
                    conversation_id)  # fmt: skip
        return None
    return c


def append_exchange(
    s: Session,
    c: Conversation,
    capture_id: str,
    request: dict[str, Any],
    response: dict[str, Any] | None,
    model: str,
) -> None:
    """Make the conversation hold the request's turns plus the answer (the client sends the
    whole history each time, so an edit or a regenerate simply replaces the tail)."""
    messages = [m for m in request.get("messages", []) if isinstance(m, dict)]
    turns = [
        (m["role"], _text(m.get("content"))) for m in messages if m.get("role") in ("user", "assistant")
    ]  # fmt: skip
    choices = (response or {}).get("choices") or []
    first = choices[0] if choices and isinstance(choices[0], dict) else {}
    answer = _text((first.get("message") or {}).get("content"))
    existing = list(
        s.scalars(select(Message).where(Message.conversation_id == c.id).order_by(Message.position))
    )
    same = 0
    for m, (role, content) in zip(existing, turns, strict=False):
        if m.role != role or _content(s, c, m) != content:
            break
        same += 1
    for m in existing[same:]:
        s.delete(m)
    for i, (role, content) in enumerate(turns[same:], start=same):
        sealed = seal_message(s, c.tenant_id, c.id, i, content)
        s.add(Message(conversation_id=c.id, position=i, role=role, content=sealed))
    s.add(
        Message(
            conversation_id=c.id, position=len(turns), role="assistant",
            content=seal_message(s, c.tenant_id, c.id, len(turns), answer), model=model,
            capture_id=capture_id,
        )
    )  # fmt: skip
    if not c.title and turns:
        seal_title_and_prompt(s, c, title=next((t for r, t in turns if r == "user"), "")[:80])
    c.model = model
    c.updated = now()
    if system := next((m for m in messages if m.get("role") == "system"), None):
        seal_title_and_prompt(s, c, system_prompt=_text(system.get("content")))


def owned_capture(s: Session, who: Principal, capture_id: str) -> Capture:
    """One of the caller's captured answers, else :class:`ConversationNotFound`."""
    owner = _owner(s, who)
    cap = s.get(Capture, capture_id)
    if owner is None or cap is None or not _is_owner(cap, *owner):
        raise ConversationNotFound(f"no answer {capture_id!r} of yours", param="capture_id")
    return cap
