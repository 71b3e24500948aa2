"""The web chat's API (``/api``) and its page (``/``): conversations, feedback, privacy, arena.

The page streams answers from the public ``/v1/chat/completions`` like any client, naming
its conversation with ``X-OpenClone-Conversation``; everything here is scoped to the caller.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from openclone.errors import InvalidRequestError, ModelNotFound
from openclone.evaluate.arena import Battle, leaderboard
from openclone.gateway.auth import CallerDep, caller
from openclone.gateway.security import same_origin
from openclone.gateway.state import Gateway, GatewayDep
from openclone.schema import ChatCompletionRequest, ChatMessage
from openclone.store import Store
from openclone.store.accounts import Principal, set_user_consent, user_consent
from openclone.store.conversations import (
    create_conversation,
    delete_conversation,
    get_conversation,
    list_conversations,
    truncate_conversation,
    update_conversation,
)
from openclone.store.privacy import add_feedback, erase
from openclone.store.votes import load_battles, record_battle

STATIC = Path(__file__).with_name("static")
# same_origin first: a cross-site request is refused before it costs a key lookup.
api = APIRouter(prefix="/api", dependencies=[Depends(same_origin), Depends(caller)])
page = APIRouter()


def _store(gw: Gateway) -> Store:
    if gw.store is None:
        raise InvalidRequestError("this server runs without a store")
    return gw.store


# The pages' headers: no inline script can run even if model text (or a name an admin
# page shows) ever reached the DOM unescaped.
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    ),
}


@page.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)


# ---- the person ------------------------------------------------------------------------


@api.get("/me")
async def me(who: CallerDep, gw: GatewayDep) -> dict[str, Any]:
    train = await asyncio.to_thread(user_consent, _store(gw), who.tenant, who.user)
    return {
        "tenant": who.tenant,
        "user": who.user or "local",
        "admin": who.is_admin,
        "train": train,
    }


class ConsentBody(BaseModel):
    train: bool


@api.put("/me/consent")
async def put_consent(body: ConsentBody, who: CallerDep, gw: GatewayDep) -> dict[str, bool]:
    if who.user is None:
        raise InvalidRequestError("this key is not a person's; consent is the tenant's")
    actor = f"{who.tenant}/{who.user}"
    await asyncio.to_thread(
        set_user_consent, _store(gw), who.tenant, who.user, body.train, actor=actor
    )
    return {"train": body.train}


@api.post("/me/erase")
async def erase_me(who: CallerDep, gw: GatewayDep) -> dict[str, Any]:
    store = _store(gw)
    if who.user is None:
        # A shared or local key has no person to erase: remove the caller's conversations.
        convs = await asyncio.to_thread(list_conversations, store, who, None, 10_000)
        for c in convs:
            await asyncio.to_thread(erase, store, actor="self", conversation=c.id)
        return {"erased": {"conversations": len(convs)}}
    try:
        result = await asyncio.to_thread(
            erase, store, actor=f"{who.tenant}/{who.user}", tenant=who.tenant, user=who.user
        )
    except InvalidRequestError:
        return {"erased": {}}  # nothing stored about this person yet
    return {"erased": result.counts}


@api.get("/me/export")
async def export_me(who: CallerDep, gw: GatewayDep) -> Response:
    store = _store(gw)

    def collect() -> list[dict[str, Any]]:
        return [
            get_conversation(store, who, c.id).to_dict()
            for c in list_conversations(store, who, None, 10_000)
        ]

    data = await asyncio.to_thread(collect)
    return Response(
        json.dumps({"tenant": who.tenant, "user": who.user, "conversations": data}, indent=2),
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="openclone-conversations.json"'},
    )


# ---- conversations ---------------------------------------------------------------------


class NewConversation(BaseModel):
    title: str = ""
    model: str | None = None
    system_prompt: str = ""
    temperature: float | None = Field(default=None, ge=0, le=2)


class ConversationPatch(BaseModel):
    title: str | None = None
    model: str | None = None
    system_prompt: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)


class Truncate(BaseModel):
    keep: int = Field(ge=0)


@api.get("/conversations")
async def conversations(
    who: CallerDep, gw: GatewayDep, q: str | None = None
) -> list[dict[str, Any]]:
    rows = await asyncio.to_thread(list_conversations, _store(gw), who, q)
    return [r.to_dict() for r in rows]


@api.post("/conversations", status_code=201)
async def new_conversation(body: NewConversation, who: CallerDep, gw: GatewayDep) -> dict[str, Any]:
    view = await asyncio.to_thread(
        lambda: create_conversation(_store(gw), who, **body.model_dump())
    )
    return view.to_dict()


@api.get("/conversations/{cid}")
async def one_conversation(cid: str, who: CallerDep, gw: GatewayDep) -> dict[str, Any]:
    return (await asyncio.to_thread(get_conversation, _store(gw), who, cid)).to_dict()


@api.patch("/conversations/{cid}")
async def patch_conversation(
    cid: str, body: ConversationPatch, who: CallerDep, gw: GatewayDep
) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True)
    view = await asyncio.to_thread(lambda: update_conversation(_store(gw), who, cid, **changes))
    return view.to_dict()


@api.delete("/conversations/{cid}", status_code=204)
async def remove_conversation(cid: str, who: CallerDep, gw: GatewayDep) -> Response:
    await asyncio.to_thread(delete_conversation, _store(gw), who, cid)
    return Response(status_code=204)


@api.post("/conversations/{cid}/truncate", status_code=204)
async def truncate(cid: str, body: Truncate, who: CallerDep, gw: GatewayDep) -> Response:
    await asyncio.to_thread(truncate_conversation, _store(gw), who, cid, body.keep)
    return Response(status_code=204)


class FeedbackBody(BaseModel):
    capture_id: str
    rating: Literal[1, -1]
    comment: str = ""


@api.post("/feedback", status_code=204)
async def feedback(body: FeedbackBody, who: CallerDep, gw: GatewayDep) -> Response:
    await asyncio.to_thread(
        add_feedback, _store(gw), who, body.capture_id, body.rating, body.comment
    )
    return Response(status_code=204)


# ---- arena -----------------------------------------------------------------------------


@dataclass
class BattleState:
    id: str
    who: Principal
    prompt: str
    models: tuple[str, str]
    created: float
    voted: bool = False


class BattleBody(BaseModel):
    prompt: str = Field(min_length=1, max_length=20_000)


class VoteBody(BaseModel):
    winner: Literal["a", "b", "tie", "both_bad"]


def _battles(gw: Gateway) -> dict[str, BattleState]:
    battles: dict[str, BattleState] = gw.__dict__.setdefault("battles", {})
    cutoff = time.time() - 3600  # an unvoted battle is forgotten after an hour
    for bid in [b for b, s in battles.items() if s.created < cutoff]:
        del battles[bid]
    return battles


def _battle(gw: Gateway, bid: str, who: Principal) -> BattleState:
    b = _battles(gw).get(bid)
    if b is None or b.who != who:
        raise ModelNotFound(f"no battle {bid!r}", param="id")
    return b


def arena_models(gw: Gateway) -> list[str]:
    """Catalog models a battle can draw: the listed names, not internal adapter engines."""
    return [name for name in gw.router.routes if "+" not in name]


@api.post("/arena/battles", status_code=201)
async def new_battle(body: BattleBody, who: CallerDep, gw: GatewayDep) -> dict[str, str]:
    models = arena_models(gw)
    if len(models) < 2:
        raise InvalidRequestError("the arena needs at least two models in the catalog")
    a, b = random.sample(models, 2)
    battle = BattleState(uuid.uuid4().hex, who, body.prompt, (a, b), time.time())
    _battles(gw)[battle.id] = battle
    return {"id": battle.id}


# Before the {side} route: that one would claim "vote" and fail its validation.
@api.post("/arena/battles/{bid}/vote")
async def vote(bid: str, body: VoteBody, who: CallerDep, gw: GatewayDep) -> dict[str, str]:
    battle = _battle(gw, bid, who)
    if battle.voted:
        raise InvalidRequestError("this battle has a vote already")
    battle.voted = True
    store = _store(gw)
    a, b = battle.models

    await asyncio.to_thread(record_battle, store, Battle(a, b, body.winner, "human"))
    return {"model_a": a, "model_b": b, "winner": body.winner}


@api.post("/arena/battles/{bid}/{side}")
async def battle_side(
    bid: str, side: Literal["a", "b"], request: Request, who: CallerDep, gw: GatewayDep
) -> StreamingResponse:
    battle = _battle(gw, bid, who)
    model = battle.models[0 if side == "a" else 1]
    req = ChatCompletionRequest(
        model=model,
        messages=[ChatMessage(role="user", content=battle.prompt)],
        stream=True,
        max_tokens=512,
    )
    it, _ = await gw.router.stream(model, lambda e: e.stream(req))

    async def events() -> Any:
        try:
            async for chunk in it:
                chunk.model = f"model-{side}"  # anonymous until the vote
                yield b"data: " + chunk.model_dump_json(exclude_none=True).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"
        finally:
            await it.aclose()

    return StreamingResponse(events(), media_type="text/event-stream")


@api.get("/arena/leaderboard")
async def arena_leaderboard(
    gw: GatewayDep, source: Literal["human", "judge", "all"] = "human"
) -> list[dict[str, Any]]:
    store = _store(gw)
    battles = await asyncio.to_thread(load_battles, store)
    rows = await asyncio.to_thread(leaderboard, battles, source)
    return [r.__dict__ for r in rows]
