"""Redaction over a whole real dataset: rows/s, counts per kind, and a sample of hits per
kind written for a person to check (precision is judged by reading, not by this script).

    python benchmarks/redaction.py ../shared/data/sharegpt_prompts.jsonl [--field instruction]

Writes benchmarks/results/redaction.json and benchmarks/results/redaction_samples.jsonl.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import Counter
from pathlib import Path

from _common import RESULTS, write_result
from rich.console import Console
from rich.table import Table

from openclone.store.redact import redact

PLACEHOLDER = re.compile(r"\[([A-Z_]+)\]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--field", default="instruction")
    ap.add_argument("--samples", type=int, default=20, help="hits kept per kind")
    args = ap.parse_args()
    with args.data.open(encoding="utf-8") as f:  # not splitlines(): U+2028 sits inside rows
        texts = [json.loads(line).get(args.field, "") for line in f if line.strip()]
    counts: Counter[str] = Counter()
    rows_hit: Counter[str] = Counter()
    samples: dict[str, list[dict[str, str]]] = {}
    t0 = time.perf_counter()
    results = [redact(t) for t in texts]
    seconds = time.perf_counter() - t0
    for r in results:
        counts.update(r.counts)
        rows_hit.update(r.counts.keys())
        for kind in r.counts:
            keep = samples.setdefault(kind, [])
            if len(keep) < args.samples:
                # Show the redacted context around the first placeholder of this kind.
                m = next(m for m in PLACEHOLDER.finditer(r.text) if m.group(1) == kind)
                keep.append({"redacted": r.text[max(0, m.start() - 80) : m.end() + 80]})
    chars = sum(map(len, texts))
    table = Table(title=f"redaction: {len(texts):,} rows, {chars / 1e6:.1f} M characters")
    for col in ("kind", "replaced", "rows"):
        table.add_column(col)
    for kind, n in counts.most_common():
        table.add_row(kind, f"{n:,}", f"{rows_hit[kind]:,}")
    console = Console()
    console.print(table)
    console.print(
        f"{len(texts) / seconds:,.0f} rows/s, {chars / seconds / 1e6:.1f} M chars/s "
        f"({seconds:.1f} s, one core)"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    sample_path = RESULTS / "redaction_samples.jsonl"
    with sample_path.open("w", encoding="utf-8") as f:
        for kind, rows in samples.items():
            for row in rows:
                f.write(json.dumps({"kind": kind, **row}, ensure_ascii=False) + "\n")
    out = write_result(
        "redaction",
        {"data": str(args.data), "rows": len(texts), "chars": chars, "seconds": seconds,
         "rows_per_s": len(texts) / seconds, "counts": dict(counts), "rows_hit": dict(rows_hit)},
    )  # fmt: skip
    console.print(f"wrote {out} and {sample_path} (check the samples by eye)")


if __name__ == "__main__":
    main()
