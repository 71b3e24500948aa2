"""What encryption at rest costs capture: rows per second the CaptureWriter commits to a
real SQLite file, the same real prompts with encryption on and off, rounds alternating in
one run so background load hits both alike.

    python benchmarks/capture_encryption.py ../shared/data/sharegpt_prompts.jsonl \
        [--rows 10000] [--rounds 3]

Each round opens a new store, queues every exchange at once (the writer's thread drains
them in batches of 256: redaction at store, as tenants have by default; every fourth
exchange names a conversation, so messages and titles are written too) and times until
the last batch is committed. Encryption on seals each request, response, message and
title with the tenant's data key (AES-256-GCM) in that same thread, never on a request's
path. Also timed alone: sealing one capture's request and response. Writes
benchmarks/results/capture_encryption.json.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from _common import load_prompts, write_result
from rich.console import Console
from rich.table import Table

from openclone.schema import Usage
from openclone.store import Store, open_store
from openclone.store.crypto import Keyring, LocalMasterKey
from openclone.store.exchange import Exchange
from openclone.store.sealed import seal_exchange
from openclone.store.tables import Tenant
from openclone.store.writer import CaptureWriter

TENANTS = ("acme", "globex", "initech")


def exchanges(prompts: list[str], rows: int, round_no: int) -> list[Exchange]:
    out = []
    for i in range(rows):
        text, answer = prompts[i % len(prompts)], prompts[(i + 7) % len(prompts)]
        message = {"role": "assistant", "content": answer}
        choice = {"index": 0, "finish_reason": "stop", "message": message}
        tokens = (len(text) // 4, len(answer) // 4)
        out.append(
            Exchange(
                id=f"r{round_no}-{i:07d}",
                endpoint="chat",
                model="gpt-4o",
                request={"model": "gpt-4o", "messages": [{"role": "user", "content": text}]},
                response={
                    "id": f"chatcmpl-{i}",
                    "object": "chat.completion",
                    "model": "gpt-4o",
                    "choices": [choice],
                },
                status=200,
                latency_ms=12.0,
                stream=False,
                usage=Usage(
                    prompt_tokens=tokens[0], completion_tokens=tokens[1], total_tokens=sum(tokens)
                ),
                tenant=TENANTS[i % len(TENANTS)],
                user=f"user-{i % 50}",
                conversation=f"conv-{round_no}-{i}" if i % 4 == 0 else None,
            )
        )
    return out


def one_round(batch: list[Exchange], keyring: Keyring) -> dict[str, float]:
    home = Path(tempfile.mkdtemp(prefix="capture-encryption-"))
    store = open_store(f"sqlite:///{home / 'openclone.db'}", keyring=keyring)
    try:
        writer = CaptureWriter(store, max_queue=len(batch) + 1)
        cpu0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for ex in batch:
            writer.submit(ex)
        writer.close(timeout=600)
        wall = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        assert writer.written == len(batch), (writer.written, writer.failed, writer.dropped)
    finally:
        store.close()
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    size = sum(p.stat().st_size for p in home.glob("openclone.db*"))
    return {"rows_s": len(batch) / wall, "cpu_us_row": cpu / len(batch) * 1e6,
            "bytes_row": size / len(batch)}  # fmt: skip


def seal_alone(batch: list[Exchange], keyring: Keyring) -> float:
    """Microseconds to seal one capture's request and response, keys in memory."""
    home = Path(tempfile.mkdtemp(prefix="capture-encryption-"))
    store: Store = open_store(f"sqlite:///{home / 'openclone.db'}", keyring=keyring)
    try:
        with store.session() as s:
            s.add(Tenant(id="t" * 32, name="t"))
            s.flush()
            seal_exchange(s, "t" * 32, "warm", {"x": 1}, None)
            t0 = time.perf_counter()
            for ex in batch:
                seal_exchange(s, "t" * 32, ex.id, ex.request, ex.response)
            return (time.perf_counter() - t0) / len(batch) * 1e6
    finally:
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="JSONL of real prompts (field 'instruction')")
    ap.add_argument("--rows", type=int, default=10_000, help="captures per round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    prompts = load_prompts(args.data, args.rows, max_chars=4000)
    master = LocalMasterKey(os.urandom(32), "benchmark key")
    modes = {"off": lambda: Keyring(), "on": lambda: Keyring(master, encrypt=True)}
    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    for make in modes.values():  # warm up: regexes compiled, statements cached
        one_round(exchanges(prompts, 500, -1), make())
    for r in range(args.rounds):
        for name, make in modes.items():
            runs[name].append(one_round(exchanges(prompts, args.rows, r), make()))
    seal_us = seal_alone(exchanges(prompts, min(args.rows, 5000), 99), modes["on"]())

    results = {}
    for name, rounds in runs.items():
        results[name] = {
            "rows_s": statistics.median(x["rows_s"] for x in rounds),
            "rows_s_rounds": [x["rows_s"] for x in rounds],
            "cpu_us_row": statistics.median(x["cpu_us_row"] for x in rounds),
            "bytes_row": statistics.median(x["bytes_row"] for x in rounds),
        }
    ratio = results["on"]["rows_s"] / results["off"]["rows_s"]
    chars = statistics.mean(len(p) for p in prompts)
    table = Table(title=f"capture writer, SQLite: {args.rows} real prompts x {args.rounds} rounds")
    for col in ("encryption", "rows/s (median)", "rounds", "CPU µs/row", "bytes/row on disk"):
        table.add_column(col)
    for name, r in results.items():
        table.add_row(name, f"{r['rows_s']:,.0f}", " ".join(f"{x:,.0f}" for x in r["rows_s_rounds"]),
                      f"{r['cpu_us_row']:.0f}", f"{r['bytes_row']:.0f}")  # fmt: skip
    console = Console()
    console.print(table)
    console.print(f"on / off: {ratio:.3f}x rows/s; sealing one capture alone: {seal_us:.1f} µs "
                  f"(prompts average {chars:.0f} characters)")  # fmt: skip
    out = write_result(
        "capture_encryption",
        {"config": {**vars(args), "data": str(args.data)}, "results": results, "ratio": ratio,
         "seal_us_per_capture": seal_us, "prompt_chars_mean": chars, "cpus": os.cpu_count(),
         "loadavg_at_end": os.getloadavg()},
    )  # fmt: skip
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
