"""Helpers shared by the benchmarks: prompts from a JSONL file, percentiles, a server process."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

DEFAULT_DATA = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sharegpt_prompts.jsonl"
)
RESULTS = Path(__file__).resolve().parent / "results"


def load_prompts(
    path: Path, n: int, max_chars: int = 1200, field: str = "instruction"
) -> list[str]:
    prompts: list[str] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            text = json.loads(line).get(field, "").strip()
            if len(text) >= 8:
                prompts.append(text[:max_chars])
            if len(prompts) >= n:
                break
    if not prompts:
        raise SystemExit(f"no prompts in {path}")
    return prompts


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    args: list[str], port: int, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    return start_process(
        [sys.executable, "-m", "openclone", "serve", "--port", str(port), *args], port, env
    )


def start_process(
    argv: list[str], port: int, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start any server on 127.0.0.1:port and wait until its /health answers 200."""
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start")


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(data, indent=2))
    return out
