"""What the HTTP server costs: the same prompts, same settings, through the server and
through the engine called in process, sequentially and at concurrency 8. The server runs
twice: with its engine in a supervised worker process (the default, "server") and in the
gateway's own process (``isolation = "thread"``, "server in-process engine"), so the
cost of the process boundary is measured in the same run. Every target is started first and
each phase's prompts go to them in interleaved slices (``--rounds``): this machine's speed
drifts by 10-30% over minutes, which back-to-back blocks would report as a difference.

    python benchmarks/serve_overhead.py [PATH.jsonl] [--requests 24] [--max-tokens 64]
        [--llama-server /path/to/llama-server]

Greedy decoding, so both sides do identical work. With ``--llama-server`` the same prompts
also go to llama.cpp's own server on the same GGUF, same slots, context and threads: the
reference a user would compare against, measured in the same run. To build the llama.cpp
that the installed llama-cpp-python vendors (about 6 minutes on 2 cores):

    pip download llama-cpp-python==$(pip show llama-cpp-python | sed -n 's/^Version: //p') \
        --no-deps --no-binary :all: -d /tmp/lcpp && cd /tmp/lcpp && tar xzf llama_cpp_python-*.tar.gz
    cd llama_cpp_python-*/vendor/llama.cpp && cmake -B build -DLLAMA_CURL=OFF \
        -DCMAKE_BUILD_TYPE=Release && cmake --build build --target llama-server -j
    # then: --llama-server $PWD/build/bin/llama-server Prints a table; writes
benchmarks/results/serve_overhead.json. Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import shlex
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from _common import (
    DEFAULT_DATA,
    free_port,
    load_prompts,
    pct,
    start_process,
    start_server,
    write_result,
)
from rich.console import Console
from rich.table import Table

from openclone.config import bundled_model_path
from openclone.engines.llamacpp import LlamaCppConfig, LlamaCppEngine, use_extra_buffers
from openclone.schema import ChatCompletionRequest

MODEL = "bench"


@dataclass
class Run:
    ttft: list[float]
    latency: list[float]
    tokens: int
    wall: float

    @staticmethod
    def join(runs: list[Run]) -> Run:
        return Run(
            [t for r in runs for t in r.ttft],
            [t for r in runs for t in r.latency],
            sum(r.tokens for r in runs),
            sum(r.wall for r in runs),
        )

    def row(self) -> dict[str, float]:
        return {
            "tok_s": self.tokens / self.wall,
            "ttft_p50_ms": pct(self.ttft, 50) * 1000,
            "ttft_p99_ms": pct(self.ttft, 99) * 1000,
            "latency_p50_ms": pct(self.latency, 50) * 1000,
            "latency_p99_ms": pct(self.latency, 99) * 1000,
            "tokens": self.tokens,
            "requests": len(self.latency),
        }


def body(prompt: str, max_tokens: int) -> dict[str, object]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def run_all(one, prompts: list[str], concurrency: int) -> Run:  # type: ignore[no-untyped-def]
    sem = asyncio.Semaphore(concurrency)
    ttft: list[float] = []
    latency: list[float] = []
    tokens = 0

    async def guarded(p: str) -> None:
        nonlocal tokens
        async with sem:
            t0 = time.perf_counter()
            first, n = await one(p)
            ttft.append(first - t0)
            latency.append(time.perf_counter() - t0)
            tokens += n

    t0 = time.perf_counter()
    await asyncio.gather(*(guarded(p) for p in prompts))
    return Run(ttft, latency, tokens, time.perf_counter() - t0)


async def in_process(
    engine: LlamaCppEngine, prompts: list[str], conc: int, *, max_tokens: int
) -> Run:
    async def one(prompt: str) -> tuple[float, int]:
        req = ChatCompletionRequest.model_validate(body(prompt, max_tokens))
        first, n = 0.0, 0
        async for chunk in engine.stream(req):
            if not first and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter()
            if chunk.usage:
                n = chunk.usage.completion_tokens
        return first or time.perf_counter(), n

    return await run_all(one, prompts, conc)


async def over_http(
    url: str, prompts: list[str], conc: int, *, max_tokens: int, keepalive: bool = True
) -> Run:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64 if keepalive else 0)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:

        async def one(prompt: str) -> tuple[float, int]:
            first, n = 0.0, 0
            async with http.stream(
                "POST", "/v1/chat/completions", json=body(prompt, max_tokens)
            ) as r:
                async for line in r.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    if (
                        not first
                        and chunk["choices"]
                        and chunk["choices"][0]["delta"].get("content")
                    ):
                        first = time.perf_counter()
                    if chunk.get("usage"):
                        n = chunk["usage"]["completion_tokens"]
            return first or time.perf_counter(), n

        return await run_all(one, prompts, conc)


def _toml_table(values: dict[str, object]) -> str:
    return "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in values.items()) + " }"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--requests", type=int, default=24)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    ap.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="each phase's prompts are split into this many slices, and every slice goes to "
        "every target in turn (rotating the order), so the machine's drift hits all alike",
    )
    ap.add_argument(
        "--engine-params", type=json.loads, default={}, help="e.g. '{\"thread_poll\": 50}'"
    )
    ap.add_argument(
        "--distinct",
        action="store_true",
        help="new prompts for each concurrency phase (by default a phase repeats the last "
        "one's, which a prompt cache serves)",
    )
    ap.add_argument("--llama-server", type=Path, help="llama.cpp's llama-server binary")
    ap.add_argument(
        "--llama-server-args", default="", help="more llama-server flags, e.g. '--cache-ram 0'"
    )
    args = ap.parse_args()
    phases = len(args.concurrency) if args.distinct else 1
    pool = load_prompts(args.data, args.requests * phases + 2)
    warm = pool[-2:]

    def phase(c: int) -> list[str]:
        """The prompts of one concurrency phase: the same for every phase unless --distinct."""
        i = args.concurrency.index(c) if args.distinct else 0
        return pool[i * args.requests : (i + 1) * args.requests]

    n_ctx = 2048
    engine_params = {"n_ctx": n_ctx, **args.engine_params}
    procs = []
    targets: dict[str, Callable[[list[str], int], Awaitable[Run]]] = {}
    for label, isolation in (("server", "process"), ("server in-process engine", "thread")):
        port = free_port()
        cfg = Path(f"/tmp/openclone-bench-{port}.toml")
        params = {"model_path": str(bundled_model_path()), **engine_params, "isolation": isolation}
        cfg.write_text(
            f'[[models]]\nname = "{MODEL}"\nengine = "llamacpp"\nparams = {_toml_table(params)}\n'
        )
        procs.append(start_server(["--config", str(cfg)], port))
        targets[label] = functools.partial(
            over_http, f"http://127.0.0.1:{port}", max_tokens=args.max_tokens
        )
    if args.llama_server:
        reference = LlamaCppConfig(**engine_params)
        port = free_port()
        threads = reference.n_threads or os.cpu_count() or 1
        procs.append(
            start_process(
                [
                    str(args.llama_server),
                    *("-m", str(bundled_model_path()), "--host", "127.0.0.1", "--port", str(port)),
                    *("-np", str(reference.n_parallel), "-c", str(n_ctx * reference.n_parallel)),
                    *("-t", str(threads), "-tb", str(threads), "-b", str(reference.n_batch)),
                    *shlex.split(args.llama_server_args),
                ],
                port,
            )
        )
        # llama-server drops a connection after a streamed answer without saying so;
        # a pooled connection would fail the next request on it.
        targets["llama-server"] = functools.partial(
            over_http, f"http://127.0.0.1:{port}", max_tokens=args.max_tokens, keepalive=False
        )

    async def measure() -> dict[str, dict[str, float]]:
        engine = LlamaCppEngine(MODEL, LlamaCppConfig(**engine_params))
        every: dict[str, Callable[[list[str], int], Awaitable[Run]]] = {
            "in-process": functools.partial(in_process, engine, max_tokens=args.max_tokens),
            **targets,
        }
        try:
            for run in every.values():
                await run(warm, 1)
            out: dict[str, dict[str, float]] = {}
            names = list(every)
            for c in args.concurrency:
                prompts = phase(c)
                size = max(1, len(prompts) // args.rounds)
                runs: dict[str, list[Run]] = {n: [] for n in names}
                for r, i in enumerate(range(0, len(prompts), size)):
                    for name in names[r % len(names) :] + names[: r % len(names)]:
                        runs[name].append(await every[name](prompts[i : i + size], c))
                for name in names:
                    out[f"{name} c={c}"] = Run.join(runs[name]).row()
            return out
        finally:
            await engine.close()

    try:
        results = asyncio.run(measure())
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()

    table = Table(
        title=f"serve overhead: {args.requests} real prompts a phase, {args.max_tokens} new tokens, greedy"
    )
    for col in ("run", "tok/s", "TTFT p50 ms", "TTFT p99 ms", "latency p50 ms", "latency p99 ms"):
        table.add_column(col)
    for name, r in results.items():
        table.add_row(
            name,
            f"{r['tok_s']:.1f}",
            f"{r['ttft_p50_ms']:.1f}",
            f"{r['ttft_p99_ms']:.1f}",
            f"{r['latency_p50_ms']:.1f}",
            f"{r['latency_p99_ms']:.1f}",
        )
    console = Console()
    console.print(table)
    summary = {}
    for c in args.concurrency:
        local, server = results[f"in-process c={c}"], results[f"server c={c}"]
        summary[f"c={c}"] = {
            "throughput_ratio": server["tok_s"] / local["tok_s"],
            "ttft_p50_added_ms": server["ttft_p50_ms"] - local["ttft_p50_ms"],
            "latency_p50_added_ms": server["latency_p50_ms"] - local["latency_p50_ms"],
        }
        threaded = results[f"server in-process engine c={c}"]
        summary[f"c={c}"]["worker_vs_in_process_server"] = server["tok_s"] / threaded["tok_s"]
        summary[f"c={c}"]["worker_ttft_p50_added_ms"] = (
            server["ttft_p50_ms"] - threaded["ttft_p50_ms"]
        )
        if f"llama-server c={c}" in results:
            summary[f"c={c}"]["vs_llama_server"] = (
                server["tok_s"] / results[f"llama-server c={c}"]["tok_s"]
            )
        s = summary[f"c={c}"]
        console.print(
            f"c={c}: server/in-process throughput {s['throughput_ratio']:.3f}x, "
            f"TTFT p50 added {s['ttft_p50_added_ms']:+.2f} ms, latency p50 added {s['latency_p50_added_ms']:+.2f} ms"
        )
        console.print(
            f"c={c}: worker-process / in-process-engine server {s['worker_vs_in_process_server']:.3f}x, "
            f"TTFT p50 added {s['worker_ttft_p50_added_ms']:+.2f} ms"
        )
        if "vs_llama_server" in s:
            console.print(f"c={c}: OpenClone server / llama-server {s['vs_llama_server']:.3f}x")
    out = write_result(
        "serve_overhead",
        {
            "config": {
                "prompts": args.requests,
                "rounds": args.rounds,
                "distinct_prompts_per_phase": args.distinct,
                "max_tokens": args.max_tokens,
                "n_ctx": n_ctx,
                "data": str(args.data),
                "machine": platform.machine(),
                "model": "SmolLM2-135M-Instruct Q4_1",
                "engine_params": engine_params,
                "extra_buffers": use_extra_buffers(LlamaCppConfig(**engine_params).extra_buffers),
                "llama_server": str(args.llama_server) if args.llama_server else None,
                "llama_server_args": args.llama_server_args,
            },
            "results": results,
            "summary": summary,
        },
    )
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
