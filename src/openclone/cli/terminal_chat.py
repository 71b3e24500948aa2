"""``openclone chat``: a streaming chat loop in the terminal, in process or against a server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from rich.console import Console

from openclone.config import Settings
from openclone.routing import Router, open_router
from openclone.schema import ChatCompletionRequest, ChatMessage


async def _local_stream(router: Router, req: ChatCompletionRequest) -> AsyncIterator[str]:
    # Registry names (an alias, NAME@N) resolve here as they do in the gateway.
    _, target = router.pin(req.model)
    routed = req if target == req.model else req.model_copy(update={"model": target})
    it, _ = await router.stream(target, lambda e: e.stream(routed))
    try:
        async for chunk in it:
            for choice in chunk.choices:
                if choice.delta.content:
                    yield choice.delta.content
    finally:
        await it.aclose()


async def _remote_stream(client: object, req: ChatCompletionRequest) -> AsyncIterator[str]:
    stream = await client.chat.completions.create(  # type: ignore[attr-defined]
        model=req.model,
        messages=[m.model_dump(exclude_none=True) for m in req.messages],
        temperature=req.temperature,
        stream=True,
    )
    async for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.content:
                yield choice.delta.content


async def run_chat(
    settings: Settings,
    model: str | None,
    url: str | None,
    api_key: str,
    system: str | None,
    temperature: float,
    console: Console,
) -> None:
    name = model or settings.default_model or ""
    router: Router | None = None
    client = None
    if url:
        from openai import AsyncOpenAI

        client = AsyncOpenAI(base_url=url, api_key=api_key)
    else:
        with console.status(f"loading {name}…"):
            router = await open_router(settings)
    history = [ChatMessage(role="system", content=system)] if system else []
    try:
        if router is not None:
            await router.route_for(router.pin(name)[1])  # an unknown name fails before the prompt
        console.print(f"[dim]chatting with {name}; empty line or Ctrl-D to quit[/dim]")
        while True:
            try:
                line = await asyncio.to_thread(console.input, "[bold green]you> [/bold green]")
            except EOFError:
                break
            if not line.strip():
                break
            history.append(ChatMessage(role="user", content=line))
            req = ChatCompletionRequest(
                model=name, messages=history, temperature=temperature, stream=True
            )
            parts: list[str] = []
            console.print("[bold blue]bot>[/bold blue] ", end="")
            pieces = _remote_stream(client, req) if client else _local_stream(router, req)  # type: ignore[arg-type]
            async for piece in pieces:
                parts.append(piece)
                console.print(piece, end="", markup=False, highlight=False)
            console.print()
            history.append(ChatMessage(role="assistant", content="".join(parts)))
    finally:
        if router is not None:
            await router.close()
