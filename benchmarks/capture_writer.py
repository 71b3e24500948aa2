"""The capture writer's own CPU per capture, alone (no gateway, no upstream), and its parts.

    python benchmarks/capture_writer.py ../shared/data/sharegpt_prompts.jsonl [--captures 4096]

Real prompts become exchanges shaped as the gateway hands them over (the trivial upstream's
answer), committed through ``CaptureWriter.write_now`` in batches of 32 to a fresh SQLite
store, sealed (the default for a new local store) and plain. The figures are CPU time
(``time.process_time``) per capture, so other load on the machine inflates them less than
wall time would; the parts (redaction, the clean-text check, the JSON dumps) are timed
alone over the same exchanges. Writes benchmarks/results/capture_writer.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import DEFAULT_DATA, load_prompts, write_result
from rich.console import Console
from rich.table import Table

from openclone.gateway.capture import new_capture_id
from openclone.schema import Usage
from openclone.store.crypto import Keyring
from openclone.store.db import open_store
from openclone.store.exchange import Exchange
from openclone.store.redact import redact
from openclone.store.scrub import clean_json, redact_exchange
from openclone.store.writer import CaptureWriter

BATCH = 32


def exchanges(prompts: list[str]) -> list[Exchange]:
    answer = "".join(f"w{i} " for i in range(16))  # benchmarks/_trivial_upstream.py
    return [
        Exchange(
            id=new_capture_id(),
            endpoint="chat",
            model="fast",
            request={
                "model": "fast",
                "messages": [{"role": "user", "content": text}],
                "max_tokens": 16,
                "user": "bench-user",
            },
            response={
                "id": "chatcmpl-trivial",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": "fast",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 16, "total_tokens": 26},
            },
            status=200,
            latency_ms=3.0,
            stream=False,
            replica="fast#0",
            usage=Usage(prompt_tokens=10, completion_tokens=16, total_tokens=26),
            tenant="default",
            user="bench-user",
        )
        for text in prompts
    ]


def cpu_us(n: int, work: Callable[[], object]) -> float:
    """CPU microseconds per item of ``n`` that ``work`` spends (best of three)."""
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        work()
        best = min(best, time.process_time() - t0)
    return best / n * 1e6


def write_all(sealed: bool, prompts: list[str]) -> float:
    """CPU µs per capture through the writer, into a fresh store (best of three stores)."""
    best = float("inf")
    for _ in range(3):
        with tempfile.TemporaryDirectory() as home:
            # A bare home gets its own master key (sealed); a plain keyring seals nothing.
            store = open_store(home=Path(home), keyring=None if sealed else Keyring())
            writer = CaptureWriter(store, batch_size=BATCH)
            batches = [exchanges(prompts[i : i + BATCH]) for i in range(0, len(prompts), BATCH)]
            writer.write_now(exchanges(prompts[:BATCH]))  # tenant, user, data key: once
            t0 = time.process_time()
            failed = sum(writer.write_now(b) for b in batches)
            best = min(best, time.process_time() - t0)
            writer.close()
            store.close()
            if failed:
                raise SystemExit(f"{failed} captures failed")
    return best / len(prompts) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, nargs="?", default=DEFAULT_DATA)
    ap.add_argument("--captures", type=int, default=4096)
    args = ap.parse_args()
    prompts = load_prompts(args.data, args.captures)
    n = len(prompts)
    exs = exchanges(prompts)
    figures = {
        "writer, sealed (default)": write_all(True, prompts),
        "writer, plain": write_all(False, prompts),
        "  redaction (redact_exchange)": cpu_us(
            n, lambda: [redact_exchange(e.request, e.response, redact) for e in exs]
        ),
        "  clean_json (request, response)": cpu_us(
            n, lambda: [(clean_json(e.request), clean_json(e.response)) for e in exs]
        ),
        "  json.dumps (request, response)": cpu_us(
            n, lambda: [(json.dumps(e.request), json.dumps(e.response)) for e in exs]
        ),
    }
    table = Table(title=f"capture writer: {n:,} captures, batches of {BATCH}, CPU µs each")
    table.add_column("part")
    table.add_column("CPU µs / capture", justify="right")
    for name, us in figures.items():
        table.add_row(name, f"{us:.1f}")
    console = Console()
    console.print(table)
    out = write_result(
        "capture_writer",
        {"data": str(args.data), "captures": n, "batch": BATCH, "cpu_us_per_capture": figures},
    )
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
