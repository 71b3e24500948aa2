"""What the gateway adds in front of an upstream: the same requests sent straight to a
trivial OpenAI-compatible upstream and through OpenClone (an `openai` engine entry pointing
at it), sequentially for latency and at concurrency 32 for throughput.

    python benchmarks/gateway_overhead.py [--requests 400] [--concurrency 32]

The peer figure to beat: LiteLLM's proxy adds ~14 ms p50 (~37 ms streaming) and tops out
near 70 req/s on this 2-core machine. Writes benchmarks/results/gateway_overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

import httpx
from _common import free_port, pct, start_server, write_result
from rich.console import Console
from rich.table import Table

BODY = {
    "model": "fast",
    "messages": [{"role": "user", "content": "Say something."}],
    "max_tokens": 16,
}


def wait_up(url: str) -> None:
    for _ in range(200):
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


async def sequential(url: str, n: int, stream: bool) -> list[float]:
    out: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        for i in range(n + 20):
            t0 = time.perf_counter()
            if stream:
                async with http.stream(
                    "POST", "/v1/chat/completions", json={**BODY, "stream": True}
                ) as r:
                    async for _ in r.aiter_bytes():
                        pass
            else:
                r = await http.post("/v1/chat/completions", json=BODY)
                r.raise_for_status()
            if i >= 20:  # warm-up excluded
                out.append(time.perf_counter() - t0)
    return out


async def throughput(url: str, n: int, conc: int) -> float:
    sem = asyncio.Semaphore(conc)
    async with httpx.AsyncClient(
        base_url=url, timeout=60, limits=httpx.Limits(max_connections=conc)
    ) as http:

        async def one() -> None:
            async with sem:
                (await http.post("/v1/chat/completions", json=BODY)).raise_for_status()

        await asyncio.gather(*(one() for _ in range(conc)))  # warm the connections
        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()
    up_port, gw_port = free_port(), free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("_trivial_upstream.py")), str(up_port)]
    )
    cfg = Path(f"/tmp/openclone-gw-bench-{gw_port}.toml")
    cfg.write_text(
        f'[[models]]\nname = "fast"\nengine = "openai"\nparams = {{ base_url = "http://127.0.0.1:{up_port}/v1" }}\n'
    )
    results: dict[str, dict[str, float]] = {}
    try:
        wait_up(f"http://127.0.0.1:{up_port}/v1/models")
        gateway = start_server(["--config", str(cfg)], gw_port)
        try:
            targets = {
                "direct": f"http://127.0.0.1:{up_port}",
                "via OpenClone": f"http://127.0.0.1:{gw_port}",
            }
            for name, url in targets.items():
                plain = asyncio.run(sequential(url, args.requests, stream=False))
                streamed = asyncio.run(sequential(url, args.requests, stream=True))
                rps = asyncio.run(throughput(url, args.requests, args.concurrency))
                results[name] = {
                    "p50_ms": pct(plain, 50) * 1000,
                    "p99_ms": pct(plain, 99) * 1000,
                    "stream_p50_ms": pct(streamed, 50) * 1000,
                    "stream_p99_ms": pct(streamed, 99) * 1000,
                    "req_s": rps,
                }
        finally:
            gateway.terminate()
            gateway.wait()
    finally:
        upstream.terminate()
        upstream.wait()

    table = Table(title=f"gateway overhead: {args.requests} requests, trivial upstream")
    for col in (
        "target",
        "p50 ms",
        "p99 ms",
        "stream p50 ms",
        "stream p99 ms",
        f"req/s @ {args.concurrency}",
    ):
        table.add_column(col)
    for name, r in results.items():
        table.add_row(
            name,
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['stream_p50_ms']:.2f}",
            f"{r['stream_p99_ms']:.2f}",
            f"{r['req_s']:.0f}",
        )
    console = Console()
    console.print(table)
    d, g = results["direct"], results["via OpenClone"]
    summary = {
        "added_p50_ms": g["p50_ms"] - d["p50_ms"],
        "added_stream_p50_ms": g["stream_p50_ms"] - d["stream_p50_ms"],
        "req_s": g["req_s"],
    }
    console.print(
        f"added p50 {summary['added_p50_ms']:.2f} ms, streaming {summary['added_stream_p50_ms']:.2f} ms; "
        f"{summary['req_s']:.0f} req/s through the gateway at c={args.concurrency}"
    )
    console.print(
        f"wrote {write_result('gateway_overhead', {'config': vars(args), 'results': results, 'summary': summary})}"
    )


if __name__ == "__main__":
    main()
