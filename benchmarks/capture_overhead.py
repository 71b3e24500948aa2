"""What capture costs: the same real prompts through two OpenClone servers in front of a
trivial upstream (so the gateway's own work is what is measured), one with capture on
(the store's batched writer, redaction before storage) and one with capture off, at
concurrency 32. Rounds alternate on/off so background load hits both alike.

    python benchmarks/capture_overhead.py ../shared/data/sharegpt_prompts.jsonl [--requests 2000]

Target: throughput with capture on >= 0.97x capture off. Writes
benchmarks/results/capture_overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from _common import free_port, load_prompts, pct, start_server, write_result
from gateway_overhead import wait_up
from rich.console import Console
from rich.table import Table


async def burst(url: str, prompts: list[str], conc: int) -> tuple[float, list[float]]:
    # aiohttp: an httpx client tops out near 400 req/s on this machine, below what the
    # gateway serves, and would hide what capture costs.
    sem = asyncio.Semaphore(conc)
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=conc)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(url, headers=headers, connector=connector) as http:

        async def one(text: str, keep: bool) -> None:
            body = {
                "model": "fast",
                "messages": [{"role": "user", "content": text}],
                "max_tokens": 16,
                "user": "bench-user",
            }
            data = json.dumps(body).encode()
            async with sem:
                t0 = time.perf_counter()
                async with http.post("/v1/chat/completions", data=data) as r:
                    r.raise_for_status()
                    await r.read()
                if keep:
                    latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(one(p, False) for p in prompts[:conc]))  # warm connections
        t0 = time.perf_counter()
        await asyncio.gather(*(one(p, True) for p in prompts))
        return len(prompts) / (time.perf_counter() - t0), latencies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="JSONL of real prompts (field 'instruction')")
    ap.add_argument("--requests", type=int, default=2000, help="per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()
    prompts = load_prompts(args.data, args.requests, max_chars=4000)
    up_port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("_trivial_upstream.py")), str(up_port)]
    )
    cfg = Path(tempfile.mkdtemp()) / "openclone.toml"
    cfg.write_text(
        f'[[models]]\nname = "fast"\nengine = "openai"\n'
        f'params = {{ base_url = "http://127.0.0.1:{up_port}/v1" }}\n'
    )
    servers: dict[str, tuple[subprocess.Popen[bytes], str, Path]] = {}
    runs: dict[str, list[tuple[float, list[float]]]] = {"capture on": [], "capture off": []}
    try:
        wait_up(f"http://127.0.0.1:{up_port}/v1/models")
        for name, capture in (("capture on", "true"), ("capture off", "false")):
            port, home = free_port(), Path(tempfile.mkdtemp())
            env = {"OPENCLONE_HOME": str(home), "OPENCLONE_CAPTURE": capture}
            servers[name] = (
                start_server(["--config", str(cfg)], port, env),
                f"http://127.0.0.1:{port}",
                home,
            )
        for _ in range(args.rounds):
            for name in runs:
                runs[name].append(asyncio.run(burst(servers[name][1], prompts, args.concurrency)))
    finally:
        for proc, _, _ in servers.values():
            proc.terminate()
            proc.wait()
        upstream.terminate()
        upstream.wait()

    from sqlalchemy import func, select

    from openclone.store import open_store
    from openclone.store.tables import Capture

    store = open_store(None, servers["capture on"][2])
    with store.session() as s:
        captured = int(s.scalar(select(func.count()).select_from(Capture)) or 0)
    store.close()
    results = {}
    for name, rounds in runs.items():
        lat = [x for _, ls in rounds for x in ls]
        results[name] = {
            "req_s": sorted(r for r, _ in rounds)[len(rounds) // 2],  # median round
            "req_s_rounds": [r for r, _ in rounds],
            "p50_ms": pct(lat, 50) * 1000,
            "p99_ms": pct(lat, 99) * 1000,
        }
    ratio = results["capture on"]["req_s"] / results["capture off"]["req_s"]
    table = Table(
        title=f"capture overhead: {args.requests} real prompts x {args.rounds} rounds, c={args.concurrency}"
    )
    for col in ("server", "req/s (median round)", "p50 ms", "p99 ms"):
        table.add_column(col)
    for name, r in results.items():
        table.add_row(name, f"{r['req_s']:.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}")
    console = Console()
    console.print(table)
    expected = args.requests * args.rounds + args.concurrency * args.rounds
    console.print(
        f"capture on / off throughput: {ratio:.3f}x; {captured} of {expected} requests captured"
    )
    out = write_result(
        "capture_overhead",
        {"config": {**vars(args), "data": str(args.data)}, "results": results, "ratio": ratio,
         "captured": captured, "requests_sent_with_capture": expected},
    )  # fmt: skip
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
