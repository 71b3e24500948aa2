"""OpenClone's near-duplicate filter against Alpaca's rouge_score loop, in the same run.

    python benchmarks/dedupe.py PATH [--reference-rows 300] [--limit N] [--threshold 0.7]

PATH is any dataset `openclone data dedupe` reads (Alpaca JSON, Alpaca or chat JSONL; the
instruction is `--field`, default "instruction"). The reference is Alpaca's loop (every new
instruction scored with `rouge_scorer._score_lcs` against every kept one, one process); it
cannot finish an Alpaca-sized set, so it runs on the first `--reference-rows` rows, and its
cost for all rows is its measured cost per pair times the pairs it would score there (the
kept rows before each row, known from the decisions, which are the same). As a check on
that per-pair cost, it is also timed on pairs drawn at random from the whole set. The fast
filter runs on all rows. Writes benchmarks/results/dedupe.json.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

from _common import write_result
from rich.console import Console
from rich.table import Table
from rouge_score import rouge_scorer

from openclone.data import dedupe, read_instructions

SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def alpaca(texts: list[str], threshold: float) -> tuple[list[bool], int]:
    """Alpaca's generate_instruction.py filter: decisions and the number of pairs scored."""
    kept: list[list[str]] = []
    decisions, pairs = [], 0
    for text in texts:
        tokens = SCORER._tokenizer.tokenize(text)
        scores = [rouge_scorer._score_lcs(tokens, other).fmeasure for other in kept]
        pairs += len(scores)
        if scores and max(scores) > threshold:
            decisions.append(False)
        else:
            decisions.append(True)
            kept.append(tokens)
    return decisions, pairs


def random_pair_cost(texts: list[str], pairs: int, seed: int = 0) -> float:
    """Seconds per `_score_lcs` call on pairs drawn at random from all rows."""
    rng = random.Random(seed)
    tokens = [SCORER._tokenizer.tokenize(t) for t in rng.sample(texts, min(len(texts), 2 * pairs))]
    drawn = [(rng.choice(tokens), rng.choice(tokens)) for _ in range(pairs)]
    start = time.perf_counter()
    for a, b in drawn:
        rouge_scorer._score_lcs(a, b)
    return (time.perf_counter() - start) / pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="dataset file (Alpaca JSON or JSONL)")
    parser.add_argument("--reference-rows", type=int, default=300)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N rows")
    parser.add_argument("--field", default="instruction")
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--random-pairs", type=int, default=2000)
    args = parser.parse_args()

    load = os.getloadavg()[0]
    texts = read_instructions(args.path, args.field).texts[: args.limit]
    n_ref = min(args.reference_rows, len(texts))
    console = Console()
    console.print(f"{len(texts)} rows from {args.path}; reference on the first {n_ref}")

    start = time.perf_counter()
    ref_keep, ref_pairs = alpaca(texts[:n_ref], args.threshold)
    ref_seconds = time.perf_counter() - start
    per_pair = ref_seconds / max(ref_pairs, 1)
    per_random_pair = random_pair_cost(texts, args.random_pairs)

    start = time.perf_counter()
    keep = dedupe(texts, args.threshold)
    seconds = time.perf_counter() - start

    # The reference scores each row against every row kept before it.
    all_pairs, kept_so_far = 0, 0
    for kept in keep:
        all_pairs += kept_so_far
        kept_so_far += kept
    estimate = all_pairs * per_pair
    identical = keep[:n_ref] == ref_keep
    result = {
        "path": str(args.path),
        "threshold": args.threshold,
        "rows": len(texts),
        "kept": sum(keep),
        "dropped": len(keep) - sum(keep),
        "seconds": round(seconds, 2),
        "reference_rows": n_ref,
        "reference_seconds": round(ref_seconds, 2),
        "reference_pairs": ref_pairs,
        "reference_us_per_pair": round(per_pair * 1e6, 1),
        "reference_us_per_random_pair": round(per_random_pair * 1e6, 1),
        "pairs_all_rows": all_pairs,
        "reference_estimate_hours": round(estimate / 3600, 1),
        "speedup": round(estimate / seconds),
        "speedup_random_pairs": round(all_pairs * per_random_pair / seconds),
        "fast_us_per_pair": round(seconds / max(all_pairs, 1) * 1e6, 4),
        "identical_decisions_on_reference_rows": identical,
        "load_average_at_start": round(load, 2),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    }

    table = Table(title=f"near-duplicate filter, ROUGE-L F > {args.threshold:g}")
    for column in ("rows", "kept", "time", "reference µs/pair", "reference, all rows", "speedup"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{len(texts):,}",
        f"{sum(keep):,}",
        f"{seconds:.1f} s",
        f"{per_pair * 1e6:.0f}",
        f"{estimate / 3600:.1f} h",
        f"{estimate / seconds:,.0f}x",
    )
    console.print(table)
    console.print(
        f"reference: {n_ref} rows, {ref_pairs:,} pairs in {ref_seconds:.1f} s; "
        f"{all_pairs:,} pairs for all rows; on {args.random_pairs} random pairs "
        f"{per_random_pair * 1e6:.0f} µs/pair (speedup {result['speedup_random_pairs']:,}x)"
    )
    console.print(f"identical decisions on the first {n_ref} rows: {identical}")
    console.print(f"wrote {write_result('dedupe', result)}")
    if not identical:
        raise SystemExit("decisions differ from the reference")


if __name__ == "__main__":
    main()
