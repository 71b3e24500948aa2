"""Dataset review at 50K rows: register, page, search, bulk-approve and export.

    python benchmarks/review_paging.py [--rows 50000]

A fresh SQLite home (which makes its own master key, so every example is sealed), one
synthetic chat row per example (every 100th asks about a refund). Each operation is the
library call the CLI and the admin API make; prints one table, writes
benchmarks/results/review_paging.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import write_result
from rich.console import Console
from rich.table import Table

from openclone.store import open_store
from openclone.store.review import (
    edit_answer,
    export_approved,
    list_examples,
    register,
    set_state,
)


def _write(path: Path, rows: int) -> None:
    with path.open("w") as f:
        for i in range(rows):
            topic = "refund" if i % 100 == 0 else "shipping"
            q = f"Customer question {i} about the {topic} policy for order {i * 7}"
            a = f"Thanks for asking. Here is a fairly ordinary answer number {i} with some detail."
            messages = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
            f.write(json.dumps({"messages": messages, "metadata": {"teacher": "t"}}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="review-bench-"))
    path = work / "dataset.jsonl"
    _write(path, args.rows)
    store = open_store(None, work / "home")
    timings: dict[str, float] = {}

    def timed(label: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = fn()
        timings[label] = time.perf_counter() - start
        return result

    try:
        ds = timed(f"register {args.rows} rows", lambda: register(store, path, actor="bench"))
        last = args.rows - 51
        timed("first page (50)", lambda: list_examples(store, ds.id, limit=50))
        timed("last page (50)", lambda: list_examples(store, ds.id, after=last, limit=50))
        timed("search one word, first page", lambda: list_examples(store, ds.id, search="refund"))
        timed("state + two words, a late page", lambda: list_examples(
            store, ds.id, state="pending", search="shipping policy", after=last - 10_000
        ))  # fmt: skip
        timed("edit one answer", lambda: edit_answer(store, ds.id, 5, "Better.", actor="bench"))
        timed("approve all matching a word", lambda: set_state(
            store, ds.id, "approved", actor="bench", search="shipping"
        ))  # fmt: skip
        out = work / "reviewed.jsonl"
        timed("export the approved rows", lambda: export_approved(store, ds.id, out, actor="bench"))
        sealed = store.keyring.encrypt
    finally:
        store.close()
    table = Table("operation", "seconds", title=f"review, {args.rows} rows, sealed: {sealed}")
    for label, seconds in timings.items():
        table.add_row(label, f"{seconds:.3f}")
    Console().print(table)
    write_result("review_paging", {"rows": args.rows, "sealed": sealed, "seconds": timings})


if __name__ == "__main__":
    main()
