"""What serving a fine-tune costs: the base model against LoRA adapters on the llama.cpp
engine, and on the other path (the ``transformers`` engine: PEFT adapters, mixed-adapter
continuous batching).

    python benchmarks/serve_adapters.py [PATH.jsonl] [--requests 24] [--max-tokens 48]
        [--adapter RUN_DIR/adapter/adapter.gguf --peft RUN_DIR/adapter] [--rounds 3]
        [--transformers-requests 8] [--threads N] [--skip-transformers]
        [--llama-server /path/to/llama-server]

Phases, each with the same real prompts (greedy, so every target does the same work per
token), interleaved in ``--rounds`` slices because this machine's speed drifts:

* ``base``: the bundled GGUF, no adapter;
* ``1 adapter``: every client on the same adapter (one batch per step);
* ``8 adapters``: each client on its own adapter (eight copies of the file, eight handles in
  llama.cpp), so a step holds up to eight groups, one ``llama_decode`` each;
* ``transformers``: the PEFT adapter on the transformers engine (``max_batch`` 8), with one
  client and with eight on one adapter, then eight clients on eight adapters (eight names for
  the same PEFT directory, so each step's forward pass computes eight LoRA sub-batches);
  ``--transformers-requests`` prompts each, run after the llama.cpp phases and compared with
  the llama.cpp base measured above (before this engine batched, it served one request at a
  time: 0.29-0.34x that base).

With ``--llama-server`` (llama.cpp's own server, built as ``benchmarks/serve_overhead.py``
says) the same prompts also go, over HTTP and interleaved with the phases above, to three
llama-server processes on the same GGUF with our engine's slots, context, batch, threads,
thread polling, KV layout and weight repacking, and no prompt cache: the base alone, the
same adapter file applied to every request (``--lora``), and the eight copies loaded
unapplied with each client naming its own in the request's ``lora`` field. Its
adapter/base ratio, printed next to ours, says how much of the LoRA cost is llama.cpp's own
(the adapter's extra matmuls in every layer) rather than our scheduler's.

Without ``--adapter`` a rank-8 adapter on every projection, with random weights, is made on
the bundled model (PEFT, then :func:`openclone.train.gguf_lora.convert_adapter`): its
compute does not depend on what it learned, and its B is kept small so that answers (and so
the tokens generated) stay the base's. Prints a table; writes benchmarks/results/serve_adapters.json.
Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from _common import DEFAULT_DATA, free_port, load_prompts, start_process, write_result
from rich.console import Console
from rich.table import Table

from openclone.config import bundled_model_path
from openclone.engines.llamacpp import LlamaCppConfig, LlamaCppEngine, use_extra_buffers
from openclone.schema import ChatCompletionRequest

BASE = "smollm2-135m-instruct"
LLAMA_SERVER = "llama-server "  # the prefix of its phases' names
Ask = Callable[[str], Awaitable[int]]  # one prompt -> completion tokens
Servers = dict[str, tuple[subprocess.Popen[bytes], str]]  # label -> (process, base URL)


def make_adapter(workdir: Path) -> tuple[Path, Path]:
    """(PEFT directory, GGUF LoRA) of a random rank-8 adapter on the bundled model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from openclone.train.gguf_lora import convert_adapter

    os.environ.setdefault("TQDM_DISABLE", "1")
    gguf = bundled_model_path()
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, torch_dtype=torch.float32
    )
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    config = LoraConfig(r=8, lora_alpha=16, target_modules=targets, init_lora_weights=False)
    peft = get_peft_model(model, config)
    # Small B: the adapter's compute is all there, but answers stay the base's, so every
    # target generates the same tokens (a random full-size B ends answers at other lengths).
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_B" in name:
                param.mul_(1e-3)
    peft_dir = workdir / "peft"
    peft.save_pretrained(str(peft_dir))
    return peft_dir, convert_adapter(peft_dir, gguf, workdir / "adapter.gguf")


def request(model: str, prompt: str, max_tokens: int) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "temperature": 0,
        }
    )


def llama_server_argv(binary: Path, config: LlamaCppConfig, port: int) -> list[str]:
    """llama-server on the engine's GGUF, with the settings the engine runs under ``config``."""
    threads = str(config.n_threads or os.cpu_count() or 1)  # the engine's own default
    model = str(config.model_path or bundled_model_path())
    argv = [
        str(binary),
        *("-m", model, "--host", "127.0.0.1", "--port", str(port)),
        # The engine gives every slot n_ctx of KV: a context of n_ctx per slot, not shared.
        *("-np", str(config.n_parallel), "-c", str(config.n_ctx * config.n_parallel)),
        *("--kv-unified" if config.kv_unified else "--no-kv-unified",),
        *("-t", threads, "-tb", threads, "-b", str(config.n_batch), "-ub", str(config.n_batch)),
        *("-fa", config.flash_attn, "--cache-ram", str(config.prompt_cache_mb)),
    ]
    if config.thread_poll >= 0:  # -1: llama.cpp's own pool, which is llama-server's default
        argv += ["--poll", str(config.thread_poll)]
    if not use_extra_buffers(config.extra_buffers):
        argv.append("--no-repack")  # llama-server's name for the extra (repacked) buffers
    return argv


def start_llama_servers(binary: Path, config: LlamaCppConfig, adapters: list[str]) -> Servers:
    """The base alone, one adapter applied to every request, and every adapter loaded
    unapplied for requests to pick (the ``lora`` field): one process each."""
    libs = os.pathsep.join(filter(None, [str(binary.parent), os.environ.get("LD_LIBRARY_PATH")]))
    flags = {
        "base": [],
        "1 adapter": ["--lora", adapters[0]],  # scale 1 on every request by default
        "8 adapters": [*(f for a in adapters for f in ("--lora", a)), "--lora-init-without-apply"],
    }
    servers: Servers = {}
    try:
        for label, extra in flags.items():
            port = free_port()
            argv = [*llama_server_argv(binary, config, port), *extra]
            Console(stderr=True).log(f"{LLAMA_SERVER}{label}: {shlex.join(argv)}")
            proc = start_process(argv, port, {"LD_LIBRARY_PATH": libs})
            servers[label] = (proc, f"http://127.0.0.1:{port}")
    except BaseException:
        stop(servers)
        raise
    return servers


def stop(servers: Servers) -> None:
    for proc, _ in servers.values():
        proc.terminate()
        proc.wait()


async def run(asks: list[Ask], prompts: list[str], clients: int) -> tuple[int, float]:
    """``clients`` at once, client i asking with ``asks[i % len(asks)]``: (tokens, seconds)."""
    queue = list(prompts)
    tokens = 0

    async def client(ask: Ask) -> None:
        nonlocal tokens
        while queue:
            n = await ask(queue.pop())  # not `tokens += await`: that reads tokens first
            tokens += n

    t0 = time.perf_counter()
    await asyncio.gather(*(client(asks[i % len(asks)]) for i in range(clients)))
    return tokens, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--requests", type=int, default=24, help="prompts per phase and client count")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--adapter", type=Path, help="a GGUF LoRA of the bundled model")
    ap.add_argument("--peft", type=Path, help="its PEFT directory, for the transformers phase")
    ap.add_argument("--skip-transformers", action="store_true")
    ap.add_argument(
        "--threads",
        type=int,
        help="CPU threads of both engines (default: each engine's own, all cores); on cores "
        "shared with other work, 1 keeps a descheduled thread from stalling every op",
    )
    ap.add_argument("--transformers-requests", type=int, default=8)
    ap.add_argument(
        "--llama-server", type=Path, help="llama.cpp's llama-server binary, measured alongside"
    )
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="openclone-adapters-"))
    peft_dir: Path | None = args.peft
    lora: Path | None = args.adapter
    if lora is None:
        peft_dir, lora = make_adapter(workdir)
    copies = {f"a{i}": str(shutil.copy(lora, workdir / f"a{i}.gguf")) for i in range(8)}
    prompts = load_prompts(args.data, args.requests + 2)
    warm, prompts = prompts[:2], prompts[2:]
    n_parallel = 8
    params: dict[str, Any] = {
        "model_path": str(bundled_model_path()), "n_ctx": 2048, "n_parallel": n_parallel,
        "adapters": copies, "prompt_cache_mb": 0,  # every prompt evaluated: same work each time
    }  # fmt: skip
    threads: dict[str, int] = {"n_threads": args.threads} if args.threads else {}
    log = Console(stderr=True).log
    results: dict[str, dict[str, float]] = {}
    servers: Servers = {}
    if args.llama_server:
        config = LlamaCppConfig.model_validate({**params, **threads})
        servers = start_llama_servers(args.llama_server, config, list(copies.values()))

    def server_phases(http: httpx.AsyncClient) -> dict[str, tuple[list[Ask], int]]:
        """The llama-server phases, named as ours with LLAMA_SERVER before them."""
        if not servers:
            return {}

        def asker(label: str, lora: int | None = None) -> Ask:
            url = servers[label][1]

            async def ask(prompt: str) -> int:
                body = request(BASE, prompt, args.max_tokens).model_dump(exclude_none=True)
                if lora is not None:  # the others stay at scale 0: not computed at all
                    body["lora"] = [{"id": lora, "scale": 1.0}]
                r = await http.post(f"{url}/v1/chat/completions", json=body)
                r.raise_for_status()
                return int(r.json()["usage"]["completion_tokens"])

            return ask

        return {
            f"{LLAMA_SERVER}base c=1": ([asker("base")], 1),
            f"{LLAMA_SERVER}1 adapter c=1": ([asker("1 adapter")], 1),
            f"{LLAMA_SERVER}base c=8": ([asker("base")], 8),
            f"{LLAMA_SERVER}1 adapter c=8": ([asker("1 adapter")], 8),
            f"{LLAMA_SERVER}8 adapters c=8": ([asker("8 adapters", i) for i in range(8)], 8),
        }

    async def measure() -> None:
        engine = LlamaCppEngine.from_config(BASE, {**params, **threads})
        # No kept-alive connections: llama-server may drop one without saying so.
        http = httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_keepalive_connections=0))

        def asker(model: str) -> Ask:
            async def ask(prompt: str) -> int:
                out = await engine.chat(request(model, prompt, args.max_tokens))
                return out.usage.completion_tokens if out.usage else 0

            return ask

        phases: dict[str, tuple[list[Ask], int]] = {
            "base c=1": ([asker(BASE)], 1),
            "1 adapter c=1": ([asker("a0")], 1),
            "base c=8": ([asker(BASE)], 8),
            "1 adapter c=8": ([asker("a0")], 8),
            "8 adapters c=8": ([asker(f"a{i}") for i in range(8)], 8),
            **server_phases(http),
        }
        try:
            for asks, _ in phases.values():
                await run(asks, warm, 1)  # loads every adapter once
            totals = dict.fromkeys(phases, (0, 0.0))
            size = max(1, len(prompts) // args.rounds)
            names = list(phases)
            for r, i in enumerate(range(0, len(prompts), size)):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    asks, clients = phases[name]
                    tokens, wall = await run(asks, prompts[i : i + size], clients)
                    done, spent = totals[name]
                    totals[name] = (done + tokens, spent + wall)
            for name, (tokens, wall) in totals.items():
                results[name] = {"tok_s": tokens / wall, "tokens": tokens, "seconds": wall}
                log(f"{name}: {tokens / wall:.1f} tok/s")
        finally:
            await http.aclose()
            await engine.close()

        if args.skip_transformers or peft_dir is None:
            return
        await measure_transformers(peft_dir, prompts[: args.transformers_requests], warm)

    async def measure_transformers(peft: Path, few: list[str], warm: list[str]) -> None:
        from openclone.engines.transformers_engine import TransformersEngine

        names = [f"a{i}" for i in range(8)]
        torch_engine = await asyncio.to_thread(
            TransformersEngine.from_config,
            BASE,
            {"model_path": str(bundled_model_path()), "max_batch": n_parallel,
             "adapters": dict.fromkeys(names, str(peft)), **threads},
        )  # fmt: skip

        def asker(model: str) -> Ask:
            async def ask(prompt: str) -> int:
                out = await torch_engine.chat(request(model, prompt, args.max_tokens))
                return out.usage.completion_tokens if out.usage else 0

            return ask

        phases: dict[str, tuple[list[Ask], int]] = {
            "transformers 1 adapter c=1": ([asker("a0")], 1),
            "transformers 1 adapter c=8": ([asker("a0")], 8),
            "transformers 8 adapters c=8": ([asker(n) for n in names], 8),
        }
        try:
            await run([asker("a0")], warm[:1], 1)
            for name, (asks, clients) in phases.items():
                tokens, wall = await run(asks, few, clients)
                results[name] = {"tok_s": tokens / wall, "tokens": tokens, "seconds": wall}
                log(f"{name}: {tokens / wall:.1f} tok/s")
        finally:
            await torch_engine.close()

    try:
        asyncio.run(measure())
    finally:
        stop(servers)

    def vs_base(name: str) -> float | None:
        """tok/s over the same server's base at the same client count."""
        server = LLAMA_SERVER if name.startswith(LLAMA_SERVER) else ""
        base = results.get(f"{server}base c={name.rsplit('c=', 1)[1]}", {}).get("tok_s")
        return results[name]["tok_s"] / base if base else None

    table = Table("phase", "tok/s", "vs base (same server, clients)", "tokens")
    for name, row in results.items():
        ratio = vs_base(name)
        table.add_row(
            name, f"{row['tok_s']:.1f}", f"{ratio:.2f}x" if ratio else "", str(int(row["tokens"]))
        )
    Console().print(table)
    # Where the LoRA cost is: ours against llama-server's own, phase by phase.
    lora_cost: dict[str, dict[str, float | None]] = {}
    for phase in ("1 adapter c=1", "1 adapter c=8", "8 adapters c=8"):
        if f"{LLAMA_SERVER}{phase}" in results and phase in results:
            ours, theirs = vs_base(phase), vs_base(f"{LLAMA_SERVER}{phase}")
            lora_cost[phase] = {"openclone": ours, "llama_server": theirs}
            print(f"{phase} / base: openclone {ours or 0:.3f}x, llama-server {theirs or 0:.3f}x")
    path = write_result(
        "serve_adapters",
        {
            "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
            "config": {
                **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                "n_parallel": n_parallel,
            },
            "results": results,
            "adapter_over_base": lora_cost,
        },
    )
    print(f"wrote {path}")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
