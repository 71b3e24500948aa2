"""The `vllm` engine: its command line, and a real process (a stand-in `vllm` executable,
``fake_vllm.py``) that it starts, talks to, restarts with its adapters, and stops."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from openclone.engines import create_engine
from openclone.engines.vllm_engine import VLLMConfig, VLLMEngine
from openclone.errors import ConfigError, EngineError, ModelNotFound
from openclone.schema import ChatCompletionRequest

FAKE = [sys.executable, str(Path(__file__).with_name("fake_vllm.py"))]


def ask(model: str) -> ChatCompletionRequest:
    return ChatCompletionRequest(model=model, messages=[{"role": "user", "content": "hi"}])


def events(log: Path, kind: str) -> list[dict[str, Any]]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [e for e in map(json.loads, lines) if e["event"] == kind]


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "vllm-calls.jsonl"
    monkeypatch.setenv("FAKE_VLLM_LOG", str(path))
    return path


@pytest.fixture
def adapters(tmp_path: Path) -> dict[str, str]:
    out = {}
    for name in ("alpha", "beta"):
        (tmp_path / name).mkdir()
        out[name] = str(tmp_path / name)
    return out


def test_command_line_from_params() -> None:
    config = VLLMConfig(
        model="Qwen/Qwen2.5-0.5B-Instruct",
        command="/opt/venv/bin/vllm",
        max_loras=8,
        max_lora_rank=64,
        gpu_memory_utilization=0.85,
        served_model_name="qwen",
        extra_args=["--max-model-len", "8192"],
    )
    assert config.command_line(8123) == [
        "/opt/venv/bin/vllm", "serve", "Qwen/Qwen2.5-0.5B-Instruct",
        "--host", "127.0.0.1", "--port", "8123",
        "--enable-lora", "--max-loras", "8", "--max-lora-rank", "64",
        "--served-model-name", "qwen", "--gpu-memory-utilization", "0.85",
        "--max-model-len", "8192",
    ]  # fmt: skip
    # A command of several words (a venv's python -m ...) is split like a shell would.
    assert VLLMConfig(model="m", command="python -m vllm.entrypoints.cli.main").command_line(1)[
        :4
    ] == ["python", "-m", "vllm.entrypoints.cli.main", "serve"]


@pytest.mark.parametrize(
    "params",
    [
        {},  # neither a model to serve nor a server to attach to
        {"base_url": "http://gpu:8000/v1", "port": 9000},  # process params while attaching
        {"model": "m", "adapters": {"a:b": "/x"}},  # not a name vLLM can serve
        {"model": "m", "max_loras": 0},
    ],
)
def test_bad_params_are_config_errors(params: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        VLLMEngine.from_config("base", params)


def test_a_vllm_that_exits_at_start_stops_the_server_with_the_reason(log: Path) -> None:
    with pytest.raises(ConfigError, match="exited with code 3"):
        VLLMEngine.from_config("base", {"model": "crash", "command": FAKE})


def test_a_configured_adapter_vllm_refuses_stops_the_start_with_vllms_reason(
    log: Path, tmp_path: Path
) -> None:
    params = {"model": "org/base", "command": FAKE, "adapters": {"gone": str(tmp_path / "no")}}
    with pytest.raises(ConfigError, match=r"could not load adapter 'gone'.*No adapter found"):
        VLLMEngine.from_config("base", params)
    (start,) = events(log, "start")
    assert not group_alive(start["pid"])  # nothing left running


def test_serves_base_and_adapters_restarts_with_them_and_stops(
    log: Path, adapters: dict[str, str]
) -> None:
    params = {"model": "org/base", "command": FAKE, "max_loras": 2, "max_lora_rank": 32,
              "adapters": {"alpha": adapters["alpha"]}}  # fmt: skip
    engine = create_engine("vllm", "base", params)  # through the entry point
    assert isinstance(engine, VLLMEngine)
    (start,) = events(log, "start")
    assert start["argv"][:2] == ["serve", "org/base"]
    assert start["argv"][6:11] == ["--enable-lora", "--max-loras", "2", "--max-lora-rank", "32"]
    assert start["runtime_updates"] is True  # the runtime LoRA API was switched on
    assert [(e["name"], e["path"]) for e in events(log, "load")] == [("alpha", adapters["alpha"])]

    async def answer(model: str) -> str:
        reply = await engine.chat(ask(model))
        assert reply.model == model  # the client sees the name it asked for
        return str(reply.choices[0].message.content)

    async def run() -> None:
        try:
            # The base under its served name; an adapter under its lora_name, both spellings.
            assert await answer("base") == "answered by org/base"
            assert await answer("base:alpha") == "answered by alpha"
            assert await answer("alpha") == "answered by alpha"
            chunks = [c async for c in engine.stream(ask("base:alpha"))]
            assert "".join(c.choices[0].delta.content or "" for c in chunks) == "answered by alpha "
            assert all(e["cache_salt"] for e in events(log, "chat"))  # the tenant's salt

            # A trained model arrives: loaded through the runtime API, then served.
            await engine.add_adapter("beta", adapters["beta"])
            assert ("beta", adapters["beta"]) in [
                (e["name"], e["path"]) for e in events(log, "load")
            ]
            assert sorted(engine.adapter_names()) == ["alpha", "beta"]
            assert await answer("base:beta") == "answered by beta"

            # vLLM refuses one: a clear error with vLLM's reason, and no answer for it after.
            with pytest.raises(EngineError, match="could not load adapter 'bad'") as refused:
                await engine.add_adapter("bad", "/nonexistent/adapter")
            assert refused.value.code == "adapter_load_failed"
            assert "No adapter found" in refused.value.message
            assert "bad" not in engine.adapter_names()
            chats = len(events(log, "chat"))
            with pytest.raises(EngineError) as failed:
                await engine.chat(ask("base:bad"))
            assert failed.value.code == "adapter_load_failed"
            with pytest.raises(ModelNotFound):
                await engine.chat(ask("base:never-trained"))
            assert len(events(log, "chat")) == chats  # neither reached vLLM as anything else

            # vLLM dies: started again on the same port, its adapters loaded again.
            os.kill(start["pid"], signal.SIGKILL)
            deadline = time.monotonic() + 20
            while engine.describe()["restarts"] < 1 or engine.describe()["state"] != "ready":
                assert time.monotonic() < deadline, engine.describe()
                await asyncio.sleep(0.1)
            assert "SIGKILL" in str(engine.describe()["last_exit"])
            second = events(log, "start")[-1]
            assert second["pid"] != start["pid"] and second["argv"] == start["argv"]
            reloaded = [e["name"] for e in events(log, "load") if e["pid"] == second["pid"]]
            assert sorted(reloaded) == ["alpha", "bad", "beta"]  # the refused one is retried
            assert await answer("alpha") == "answered by alpha"
            assert await answer("base:beta") == "answered by beta"

            # Archive: unloaded at vLLM, and no longer served.
            await engine.remove_adapter("beta")
            assert events(log, "unload")[-1]["name"] == "beta"
            chats = len(events(log, "chat"))
            for name in ("base:beta", "beta"):  # by its own name too: never the base's answer
                with pytest.raises(ModelNotFound):
                    await engine.chat(ask(name))
            assert len(events(log, "chat")) == chats
        finally:
            await engine.close()

    asyncio.run(run())
    assert not any(group_alive(e["pid"]) for e in events(log, "start"))  # close() left none
    assert engine.describe()["pid"] is None


def test_attaches_to_a_running_server_without_starting_one(
    log: Path, adapters: dict[str, str]
) -> None:
    from conftest import free_port

    port = free_port()
    server = subprocess.Popen([*FAKE, "serve", "org/base", "--port", str(port)],
                              env={**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "1"})  # fmt: skip
    try:
        params = {"base_url": f"http://127.0.0.1:{port}/v1", "served_model_name": "org/base",
                  "adapters": adapters, "start_timeout": 20}  # fmt: skip
        engine = VLLMEngine.from_config("base", params)

        async def run() -> None:
            try:
                reply = await engine.chat(ask("beta"))
                assert reply.choices[0].message.content == "answered by beta"
                assert await engine.health()
            finally:
                await engine.close()

        asyncio.run(run())
        assert len(events(log, "start")) == 1  # only the server this test started
        assert engine.describe()["managed"] is False
    finally:
        server.kill()
        server.wait()


def test_trained_runs_of_its_base_go_to_the_catalogs_vllm_engine(
    log: Path, adapters: dict[str, str]
) -> None:
    from openclone.config import ModelConfig, Settings
    from openclone.routing.discovery import trained_models
    from openclone.routing.router import Router
    from openclone.store.trained import TrainedModel, save_record

    run = TrainedModel(name="support-v1", base="base", base_path="org/base",
                       adapter_path=adapters["alpha"], dataset="d.jsonl", dataset_sha256="0")  # fmt: skip
    save_record(run)  # in this test's OPENCLONE_HOME, which the server reads
    catalog = ModelConfig(name="base", engine="vllm", params={"model": "org/base", "command": FAKE})

    async def run_it() -> None:
        router = await Router.build(Settings(models=[catalog]))
        try:
            route = await trained_models(router, "base:support-v1")
            assert route is router.routes["base"]  # the catalog's vLLM, no new engine
            reply = await router.routes["base"].replicas[0].engine.chat(ask("support-v1"))
            assert reply.choices[0].message.content == "answered by support-v1"
        finally:
            await router.close()

    asyncio.run(run_it())
    assert [(e["name"], e["path"]) for e in events(log, "load")] == [
        ("support-v1", adapters["alpha"])
    ]
    assert len(events(log, "start")) == 1
