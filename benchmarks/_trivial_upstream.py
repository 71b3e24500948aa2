"""A trivial OpenAI-compatible upstream for the gateway benchmark: answers instantly with a
fixed reply (16 chunks when streaming). It exists to make the gateway's own cost visible.

    python benchmarks/_trivial_upstream.py PORT
"""

from __future__ import annotations

import json
import sys
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

WORDS = [f"w{i} " for i in range(16)]


def _completion(model: str) -> dict[str, object]:
    return {
        "id": "chatcmpl-trivial",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(WORDS)},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 16, "total_tokens": 26},
    }


async def chat(request: Request) -> Response:
    body = json.loads(await request.body())
    model = body.get("model", "x")
    if not body.get("stream"):
        return JSONResponse(_completion(model))

    async def events():  # type: ignore[no-untyped-def]
        base = {
            "id": "chatcmpl-trivial",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        yield f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': {'role': 'assistant', 'content': ''}}]})}\n\n"
        for w in WORDS:
            yield f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': {'content': w}}]})}\n\n"
        yield f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': {}, 'finish_reason': 'stop'}]})}\n\n"
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": 10, "completion_tokens": 16, "total_tokens": 26}
            yield f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def models(_: Request) -> Response:
    return JSONResponse({"object": "list", "data": [{"id": "trivial", "object": "model"}]})


app = Starlette(
    routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/v1/models", models)]
)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
