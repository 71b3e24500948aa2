"""``openclone data``: dataset commands, each a thin layer over ``openclone.data``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from openclone.cli.common import FAILED, USAGE, console, err, fail
from openclone.cli.review import review_app
from openclone.data import DatasetFormatError, dedupe, read_instructions

__all__ = ["data_app"]

data_app = typer.Typer(
    help="Datasets: filter near-duplicate instructions (Alpaca JSON, Alpaca or chat JSONL).",
    no_args_is_help=True,
    add_completion=False,
)


@data_app.callback()
def data() -> None:
    """Datasets: filter near-duplicate instructions (Alpaca JSON, Alpaca or chat JSONL)."""


data_app.add_typer(review_app, name="review")


@data_app.command("dedupe")
def dedupe_command(
    path: Annotated[Path, typer.Argument(help="Alpaca JSON, Alpaca JSONL or OpenAI chat JSONL")],
    out: Annotated[Path, typer.Option("--out", "-o", help="where to write the kept rows")],
    field: Annotated[
        str, typer.Option(help="the instruction field; chat rows use their first user message")
    ] = "instruction",
    threshold: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="drop a row whose ROUGE-L F with an earlier kept row is above"
        ),
    ] = 0.7,
) -> None:
    """Drop near-duplicate instructions exactly as Alpaca does, fast.

    In order, a row is dropped when its ROUGE-L F with an earlier kept row is above the threshold.

    Only a-z and 0-9 make tokens (rouge_score's rule): other scripts score 0 and are always kept.
    """
    try:
        dataset = read_instructions(path, field)
    except DatasetFormatError as exc:
        raise fail(exc, USAGE) from None
    start = time.perf_counter()
    columns = (TextColumn("dedupe"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("dedupe", total=len(dataset.texts))
        keep = dedupe(dataset.texts, threshold, lambda done: progress.update(task, completed=done))
    seconds = time.perf_counter() - start
    try:
        kept = dataset.write(out, keep)
    except OSError as exc:
        raise fail(f"cannot write {out}: {exc.strerror or exc}", FAILED) from None
    table = Table(title=f"dedupe: drop when ROUGE-L F > {threshold:g}")
    for column in ("rows in", "kept", "dropped", "time"):
        table.add_column(column, justify="right")
    table.add_row(str(len(keep)), str(kept), str(len(keep) - kept), f"{seconds:.2f} s")
    console.print(table)
    console.print(f"kept rows written to {out}")


@data_app.command("convert")
def convert_command(
    path: Annotated[Path, typer.Argument(help="OpenAI chat JSONL, Alpaca JSON/JSONL or ShareGPT")],
    to: Annotated[str, typer.Option("--to", help="openai | alpaca | sharegpt")],
    out: Annotated[Path, typer.Option("--out", "-o", help=".json: one JSON array; else JSONL")],
) -> None:
    """Convert a dataset between OpenAI chat JSONL, Alpaca and ShareGPT."""
    from openclone.data.formats import LAYOUTS, Layout, convert_dataset

    if to not in LAYOUTS:
        raise typer.BadParameter(f"choose one of {', '.join(LAYOUTS)}", param_hint="--to")
    try:
        result = convert_dataset(path, out, cast(Layout, to))
    except DatasetFormatError as exc:
        raise fail(exc, USAGE) from None
    except OSError as exc:
        raise fail(f"cannot write {out}: {exc.strerror or exc}", FAILED) from None
    skipped = ", ".join(f"{n} ({reason})" for reason, n in result.skipped.items())
    console.print(
        f"wrote {result.written} of {result.rows} rows to {out} as {to}"
        + (f"; skipped {skipped}" if skipped else "")
    )
