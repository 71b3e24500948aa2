"""The clients OpenClone's own tools use: the router in process and a server over HTTP."""

from __future__ import annotations

import asyncio

import pytest
from conftest import BUNDLED, Server

from openclone.config import load_settings
from openclone.errors import ModelNotFound
from openclone.routing.client import HTTPClient, RouterClient
from openclone.schema import ChatCompletionRequest


def _req(model: str) -> ChatCompletionRequest:
    return ChatCompletionRequest(
        model=model,
        messages=[{"role": "user", "content": "Name a colour."}],
        max_tokens=8,
        temperature=0,
    )


def test_router_and_http_clients_give_the_same_greedy_answer(server: Server) -> None:
    async def go() -> tuple[str, str, list[str]]:
        local = await RouterClient.start(load_settings(None))
        remote = HTTPClient(server.base_url)
        try:
            a = await local.chat(_req(BUNDLED))
            b = await remote.chat(_req(BUNDLED))
            return (
                a.choices[0].message.content or "",
                b.choices[0].message.content or "",
                local.models(),
            )
        finally:
            await local.aclose()
            await remote.aclose()

    in_process, over_http, models = asyncio.run(go())
    assert in_process and in_process == over_http
    assert models == [BUNDLED]


def test_http_client_raises_model_not_found_for_an_unknown_model(server: Server) -> None:
    async def go() -> None:
        remote = HTTPClient(server.base_url)
        try:
            await remote.chat(_req("no-such-model"))
        finally:
            await remote.aclose()

    with pytest.raises(ModelNotFound, match="no-such-model"):
        asyncio.run(go())
