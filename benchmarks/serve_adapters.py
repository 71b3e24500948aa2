"""What serving a fine-tune costs: the base model against LoRA adapters on the llama.cpp
engine, and on the other path (the ``transformers`` engine: PEFT adapters, mixed-adapter
continuous batching).

    python benchmarks/serve_adapters.py [PATH.jsonl] [--requests 24] [--max-tokens 48]
        [--adapter RUN_DIR/adapter/adapter.gguf --peft RUN_DIR/adapter] [--rounds 3]
        [--transformers-requests 8] [--threads N] [--skip-transformers]

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
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _common import DEFAULT_DATA, load_prompts, write_result
from rich.console import Console
from rich.table import Table

from openclone.config import bundled_model_path
from openclone.engines.llamacpp import LlamaCppEngine
from openclone.schema import ChatCompletionRequest

BASE = "smollm2-135m-instruct"
Ask = Callable[[str], Awaitable[int]]  # one prompt -> completion tokens


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

    async def measure() -> None:
        engine = LlamaCppEngine.from_config(BASE, {**params, **threads})

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

    asyncio.run(measure())
    table = Table("phase", "tok/s", "vs base (same clients)", "tokens")
    for name, row in results.items():
        clients = name.rsplit("c=", 1)[1]
        base = results.get(f"base c={clients}", {}).get("tok_s")
        ratio = f"{row['tok_s'] / base:.2f}x" if base else ""
        table.add_row(name, f"{row['tok_s']:.1f}", ratio, str(int(row["tokens"])))
    Console().print(table)
    path = write_result(
        "serve_adapters",
        {
            "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
            "config": {**vars(args), "data": str(args.data), "n_parallel": n_parallel},
            "results": results,
        },
    )
    print(f"wrote {path}")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
