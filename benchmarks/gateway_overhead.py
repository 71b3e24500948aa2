"""What the gateway adds in front of an upstream: the same requests sent straight to a
trivial OpenAI-compatible upstream and through OpenClone (an `openai` engine entry pointing
at it), sequentially for latency and at concurrency 32 for throughput.

    python benchmarks/gateway_overhead.py [--requests 2000] [--concurrency 32]
        [--auth none|key|limits]

``--auth key`` sends an API key (a fresh store in a temporary home); ``--auth limits`` the
same key with rate limits on its tenant and on the key itself, set too high to refuse
anything, so the two runs differ by what enforcing limits costs a request.

Besides latency and req/s it reports the CPU each request costs the server that answers
it (from /proc): on a small shared machine latency is mostly wake-ups between three
processes, while CPU per request is what a faster gateway actually saves.

The peer figure to beat: LiteLLM's proxy adds ~14 ms p50 (~37 ms streaming) and tops out
near 70 req/s on this 2-core machine. Writes benchmarks/results/gateway_overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
from _common import free_port, pct, start_server, write_result
from rich.console import Console
from rich.table import Table

HEADERS = {"Content-Type": "application/json"}
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
    body = json.dumps({**BODY, "stream": True} if stream else BODY).encode()
    async with aiohttp.ClientSession(url, headers=HEADERS) as http:
        for i in range(n + 20):
            t0 = time.perf_counter()
            async with http.post("/v1/chat/completions", data=body) as r:
                r.raise_for_status()
                await r.read()
            if i >= 20:  # warm-up excluded
                out.append(time.perf_counter() - t0)
    return out


async def throughput(url: str, n: int, conc: int) -> float:
    body = json.dumps(BODY).encode()
    connector = aiohttp.TCPConnector(limit=conc)
    async with aiohttp.ClientSession(url, headers=HEADERS, connector=connector) as http:

        async def one() -> None:
            async with http.post("/v1/chat/completions", data=body) as r:
                r.raise_for_status()
                await r.read()

        async def worker(k: int) -> None:
            for _ in range(k):
                await one()

        await asyncio.gather(*(one() for _ in range(conc)))  # warm the connections
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(n // conc) for _ in range(conc)))
        return (n // conc) * conc / (time.perf_counter() - t0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _auth(mode: str) -> dict[str, str]:
    """The gateway's environment for ``mode``; puts the key in every request's headers."""
    if mode == "none":
        return {}
    from openclone.store import open_store
    from openclone.store.keys import create_key
    from openclone.store.ratelimits import set_limits

    home = Path(tempfile.mkdtemp(prefix="openclone-gw-bench-"))
    store = open_store(None, home)
    info, token = create_key(store, "bench")
    if mode == "limits":
        huge = {"rpm": 10**9, "tpm": 10**12, "max_streams": 10**6, "monthly_tokens": 10**15}
        set_limits(store, tenant="bench", values=huge, actor="benchmark")
        set_limits(store, key=info.id, values=huge, actor="benchmark")
    store.close()
    HEADERS["Authorization"] = f"Bearer {token}"
    return {"OPENCLONE_HOME": str(home)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--auth", choices=("none", "key", "limits"), default="none")
    args = ap.parse_args()
    env = _auth(args.auth)
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
        gateway = start_server(["--config", str(cfg)], gw_port, env)
        try:
            # The server whose CPU each target's requests cost: the upstream's when direct,
            # the gateway's (its capture writer included) through OpenClone.
            targets = {
                "direct": (f"http://127.0.0.1:{up_port}", upstream.pid),
                "via OpenClone": (f"http://127.0.0.1:{gw_port}", gateway.pid),
            }
            for name, (url, pid) in targets.items():
                c0 = cpu_seconds(pid)
                plain = asyncio.run(sequential(url, args.requests, stream=False))
                c1 = cpu_seconds(pid)
                streamed = asyncio.run(sequential(url, args.requests, stream=True))
                c2 = cpu_seconds(pid)
                rps = asyncio.run(throughput(url, args.requests, args.concurrency))
                n = args.requests + 20
                results[name] = {
                    "p50_ms": pct(plain, 50) * 1000,
                    "p99_ms": pct(plain, 99) * 1000,
                    "stream_p50_ms": pct(streamed, 50) * 1000,
                    "stream_p99_ms": pct(streamed, 99) * 1000,
                    "req_s": rps,
                    "server_cpu_ms": (c1 - c0) / n * 1000,
                    "stream_server_cpu_ms": (c2 - c1) / n * 1000,
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
        "server CPU ms/req",
        "stream CPU ms/req",
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
            f"{r['server_cpu_ms']:.2f}",
            f"{r['stream_server_cpu_ms']:.2f}",
        )
    console = Console()
    console.print(table)
    d, g = results["direct"], results["via OpenClone"]
    summary = {
        "added_p50_ms": g["p50_ms"] - d["p50_ms"],
        "added_stream_p50_ms": g["stream_p50_ms"] - d["stream_p50_ms"],
        "req_s": g["req_s"],
        "gateway_cpu_ms": g["server_cpu_ms"],
        "gateway_stream_cpu_ms": g["stream_server_cpu_ms"],
    }
    console.print(
        f"added p50 {summary['added_p50_ms']:.2f} ms, streaming {summary['added_stream_p50_ms']:.2f} ms; "
        f"{summary['req_s']:.0f} req/s through the gateway at c={args.concurrency}; "
        f"gateway CPU {summary['gateway_cpu_ms']:.2f} ms/request "
        f"({summary['gateway_stream_cpu_ms']:.2f} streaming)"
    )
    console.print(
        f"wrote {write_result('gateway_overhead', {'config': vars(args), 'results': results, 'summary': summary})}"
    )


if __name__ == "__main__":
    main()
