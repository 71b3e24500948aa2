"""Helpers for the evaluation tests: the bundled model's settings, and a stand-in client."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from conftest import BUNDLED

from openclone.config import ModelConfig, Settings, load_settings
from openclone.schema import AssistantMessage, ChatCompletion, ChatCompletionRequest, Choice, Usage

# One ggml thread: the tests share two cores with other work, and llama.cpp's spinning
# thread pool slows to a crawl when it has to fight for them.
BUNDLED_PARAMS = {"n_ctx": 1024, "n_parallel": 8, "n_threads": 1}


def bundled_settings(*extra_names: str) -> Settings:
    """The bundled model, plus copies of it under ``extra_names`` (distinct catalog models)."""
    models = [ModelConfig(name=n, params=BUNDLED_PARAMS) for n in (BUNDLED, *extra_names)]
    return load_settings(None, models=models)


def bundled_toml(path: Path, *extra_names: str) -> Path:
    lines = [f'default_model = "{BUNDLED}"']
    for name in (BUNDLED, *extra_names):
        lines += ["[[models]]", f'name = "{name}"', "params = { n_ctx = 1024, n_threads = 1 }"]
    path.write_text("\n".join(lines) + "\n")
    return path


Reply = Callable[[ChatCompletionRequest], str]


class StandInClient:
    """A stand-in for a model server, for what the real bundled model cannot do on demand:
    scripted answers (a judge with a known preference, an upstream whose answers change,
    markup in an answer) and faults (429s, a prompt that is too long). ``reply`` answers a
    request or raises an OpenClone error."""

    def __init__(self, reply: Reply, models: list[str] | None = None) -> None:
        self.reply = reply
        self.requests: list[ChatCompletionRequest] = []
        self._models = models or []

    async def chat(self, req: ChatCompletionRequest) -> ChatCompletion:
        self.requests.append(req)
        text = self.reply(req)
        return ChatCompletion(
            model=req.model,
            choices=[Choice(index=0, message=AssistantMessage(content=text), finish_reason="stop")],
            usage=Usage.of(10, len(text.split())),
        )

    def models(self) -> list[str]:
        return self._models

    async def aclose(self) -> None:
        return None
