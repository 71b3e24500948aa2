"""A stand-in for the ``vllm`` executable: ``fake_vllm.py serve MODEL --port P [...]``.

It answers what OpenClone uses of vLLM's server (``/health``, ``/v1/models``,
``/v1/chat/completions`` and the runtime LoRA API) and appends every call as one JSON line
to ``$FAKE_VLLM_LOG``. A chat answer names the model it was asked for, so a test sees which
``lora_name`` reached "vLLM". The model ``crash`` exits at once with code 3; a ``lora_path``
that is not a directory is refused as vLLM refuses it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

LOG = Path(os.environ["FAKE_VLLM_LOG"])
_write = threading.Lock()


def record(event: str, **fields: Any) -> None:
    with _write, LOG.open("a") as f:
        f.write(json.dumps({"event": event, "pid": os.getpid(), **fields}) + "\n")


class Handler(BaseHTTPRequestHandler):
    served: str = ""
    loras: dict[str, str] = {}
    runtime_updates = os.environ.get("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "").lower() in (
        "1",
        "true",
    )

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def reply(self, status: int, body: Any, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, status: int, message: str) -> None:
        # vLLM's older error shape, top-level: OpenClone must read it too.
        self.reply(status, {"object": "error", "message": message, "type": "BadRequestError",
                            "code": status})  # fmt: skip

    def do_GET(self) -> None:
        if self.path == "/health":
            self.reply(200, b"", "text/plain")
        elif self.path == "/v1/models":
            data = [{"id": self.served, "object": "model"}]
            data += [{"id": n, "object": "model", "parent": self.served} for n in self.loras]
            self.reply(200, {"object": "list", "data": data})
        else:
            self.error(404, "not found")

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self.path == "/v1/load_lora_adapter":
            record("load", name=body["lora_name"], path=body["lora_path"])
            if not self.runtime_updates:
                return self.error(404, "runtime LoRA updating is off")
            if body["lora_name"] in self.loras:
                return self.error(400, f"The lora adapter '{body['lora_name']}' has already been loaded.")  # fmt: skip
            if not Path(body["lora_path"]).is_dir():
                return self.error(400, f"No adapter found for {body['lora_path']}")
            self.loras[body["lora_name"]] = body["lora_path"]
            return self.reply(200, b"Success: LoRA adapter added successfully.", "text/plain")
        if self.path == "/v1/unload_lora_adapter":
            record("unload", name=body["lora_name"])
            if self.loras.pop(body["lora_name"], None) is None:
                return self.error(404, f"The lora adapter '{body['lora_name']}' cannot be found.")
            return self.reply(200, b"Success: LoRA adapter removed successfully.", "text/plain")
        if self.path == "/v1/chat/completions":
            model = body.get("model")
            record("chat", model=model, cache_salt=body.get("cache_salt"))
            if model != self.served and model not in self.loras:
                return self.error(404, f"The model `{model}` does not exist.")
            return self.chat(body, f"answered by {model}")
        self.error(404, "not found")

    def chat(self, body: dict[str, Any], text: str) -> None:
        base = {"id": "c1", "created": 0, "model": body["model"]}
        if not body.get("stream"):
            choice = {"index": 0, "message": {"role": "assistant", "content": text},
                      "finish_reason": "stop"}  # fmt: skip
            return self.reply(200, {**base, "object": "chat.completion", "choices": [choice]})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for word in text.split(" "):
            delta = {"index": 0, "delta": {"content": word + " "}, "finish_reason": None}
            chunk = {**base, "object": "chat.completion.chunk", "choices": [delta]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.close_connection = True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("model")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--served-model-name")
    args, _ = parser.parse_known_args()
    record("start", argv=sys.argv[1:], runtime_updates=Handler.runtime_updates)
    if args.model == "crash":
        sys.exit(3)
    Handler.served = args.served_model_name or args.model
    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
