"""``openclone data review``: human review of a dataset, over :mod:`openclone.store.review`.

Each command is one library call; the admin page (``/admin``, Datasets) does the same over
HTTP. Every change is audited with ``cli`` as the actor.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Column, Table

from openclone.cli.common import USAGE, ConfigOpt, console, err, fail, opened_store

if TYPE_CHECKING:
    from openclone.store.review import ExampleInfo

__all__ = ["review_app"]

ACTOR = "cli"

review_app = typer.Typer(
    help="Review a dataset: page, search, edit answers, approve or reject, export.",
    no_args_is_help=True,
    add_completion=False,
)

DatasetArg = Annotated[str, typer.Argument(help="the dataset's id (or a unique prefix of it)")]
StateOpt = Annotated[
    str | None,
    typer.Option("--state", help="only examples in this state: pending|approved|rejected"),
]
SearchOpt = Annotated[
    str | None, typer.Option("--search", help="only examples with every one of these words")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


def _short(text: str, width: int = 70) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


@review_app.command("add")
def add_command(
    path: Annotated[Path, typer.Argument(help="an OpenAI chat JSONL file (e.g. a distill output)")],
    tenant: Annotated[
        str | None,
        typer.Option(help="whose key seals it (default: its captures' tenant, else 'default')"),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Register a dataset for review: its rows become pending examples (again: a no-op)."""
    from openclone.store.review import register

    with opened_store(config) as store:
        info = register(store, path, actor=ACTOR, tenant=tenant)
    console.print(f"dataset [bold]{info.id}[/bold] · {info.rows} examples from {escape(info.path)}")
    console.print(f"  openclone data review list {info.id}")


@review_app.command("list")
def list_command(
    dataset: Annotated[
        str | None, typer.Argument(help="a dataset id; none: list the datasets")
    ] = None,
    state: StateOpt = None,
    search: SearchOpt = None,
    after: Annotated[int, typer.Option(help="show the rows after this row (the next page)")] = -1,
    limit: Annotated[int, typer.Option(min=1, max=500, help="rows per page")] = 20,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """The datasets under review, or one page of a dataset's examples."""
    from openclone.store.review import list_datasets, list_examples

    with opened_store(config) as store:
        if dataset is None:
            sets = list_datasets(store, limit=limit)
            if json_out:
                print(json.dumps({"data": [d.to_dict() for d in sets]}))
                return
            table = Table("name", "tenant", "rows", "pending", "approved", "rejected", "edited")
            # The id (what every other command takes) must survive a narrow terminal whole.
            table.columns.insert(0, Column("id", no_wrap=True))
            for d in sets:
                c = d.counts
                table.add_row(d.id, escape(d.name), d.tenant, str(d.rows), str(c["pending"]),
                              str(c["approved"]), str(c["rejected"]), str(c["edited"]))  # fmt: skip
            console.print(table if sets else "no datasets under review")
            return
        page = list_examples(store, dataset, state=state, search=search, after=after, limit=limit)
    if json_out:
        print(json.dumps({"data": [e.to_dict() for e in page.data], "has_more": page.has_more,
                          "total": page.total, "next_after": page.next_after}))  # fmt: skip
        return
    table = Table("row", "state", "source", "prompt", "answer", title=f"{page.total} matching")
    for e in page.data:
        answer = ("✎ " if e.edited else "") + _short(e.answer)
        table.add_row(str(e.row), e.state, e.source, escape(_short(e.prompt)), escape(answer))
    console.print(table)
    if page.has_more:
        err.print(f"next page: --after {page.next_after}")


def _show(e: ExampleInfo) -> None:
    where = f"capture {e.capture_id}" if e.capture_id else e.source
    console.print(
        f"row {e.row} · {e.state} · {where}" + (f" · teacher {e.teacher}" if e.teacher else "")
    )
    for m in e.messages:
        console.print(f"[bold]{escape(str(m.get('role')))}:[/bold] {escape(str(m.get('content')))}")
    if e.edited:
        console.print(f"[bold]assistant (original):[/bold] {escape(e.original)}")
        console.print(f"[bold]assistant (edited):[/bold] {escape(e.answer)}")
    else:
        console.print(f"[bold]assistant:[/bold] {escape(e.answer)}")


@review_app.command("show")
def show_command(
    dataset: DatasetArg,
    row: Annotated[int, typer.Argument(help="the example's row")],
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """One example whole: the conversation, the answer (and its edit), its source."""
    from openclone.store.review import get_example

    with opened_store(config) as store:
        example = get_example(store, dataset, row)
    if json_out:
        print(json.dumps(example.to_dict()))
    else:
        _show(example)


@review_app.command("edit")
def edit_command(
    dataset: DatasetArg,
    row: Annotated[int, typer.Argument(help="the example's row")],
    answer: Annotated[str, typer.Option("--answer", help="the answer training should get")],
    config: ConfigOpt = None,
) -> None:
    """Replace an example's answer (the original is kept; giving it again undoes the edit)."""
    from openclone.store.review import edit_answer

    with opened_store(config) as store:
        example = edit_answer(store, dataset, row, answer, actor=ACTOR)
    console.print(
        f"row {row}: {'edited' if example.edited else 'original answer'} ({example.state})"
    )


def _set(
    state: str, dataset: str, rows: list[int] | None, all_matching: bool, where: str | None,
    search: str | None, config: Path | None,
) -> None:  # fmt: skip
    from openclone.store.review import set_state

    if bool(rows) == all_matching:
        raise fail("name the rows, or give --all-matching (with --state/--search)", USAGE)
    if rows and (where or search):
        raise fail("--state and --search go with --all-matching, not with rows", USAGE)
    with opened_store(config) as store:
        n = set_state(store, dataset, state, actor=ACTOR, rows=rows or None,
                      where_state=where, search=search)  # fmt: skip
    console.print(f"{n} examples {state}")


RowsArg = Annotated[list[int] | None, typer.Argument(help="rows to set")]
AllOpt = Annotated[bool, typer.Option("--all-matching", help="every row matching the filters")]


@review_app.command("approve")
def approve_command(
    dataset: DatasetArg, rows: RowsArg = None, all_matching: AllOpt = False,
    state: StateOpt = None, search: SearchOpt = None, config: ConfigOpt = None,
) -> None:  # fmt: skip
    """Approve rows (training takes them), or every row matching --state/--search."""
    _set("approved", dataset, rows, all_matching, state, search, config)


@review_app.command("reject")
def reject_command(
    dataset: DatasetArg, rows: RowsArg = None, all_matching: AllOpt = False,
    state: StateOpt = None, search: SearchOpt = None, config: ConfigOpt = None,
) -> None:  # fmt: skip
    """Reject rows (training leaves them out), or every row matching --state/--search."""
    _set("rejected", dataset, rows, all_matching, state, search, config)


@review_app.command("export")
def export_command(
    dataset: DatasetArg,
    out: Annotated[Path, typer.Argument(help="where to write the approved rows (JSONL)")],
    config: ConfigOpt = None,
) -> None:
    """Write the approved examples, edits applied, for `openclone train`."""
    from openclone.store.review import export_approved

    with opened_store(config) as store:
        n = export_approved(store, dataset, out, actor=ACTOR)
    console.print(f"wrote {n} approved examples to {escape(str(out))}")
