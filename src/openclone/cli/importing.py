"""``openclone import``: bring data from OpenAI (or any server with its API) and from files.

A thin layer over :mod:`openclone.data.importing` (files) and
:mod:`openclone.data.import_server` (a server's stored completions and fine-tunes).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

import typer
from rich.markup import escape
from rich.table import Table

from openclone.cli.common import (
    FELL_SHORT,
    USAGE,
    ConfigOpt,
    console,
    err,
    exit_on_error,
    fail,
    opened_store,
    read_settings,
)

if TYPE_CHECKING:
    from openai import OpenAI

    from openclone.data.importing import ImportReport

__all__ = ["import_command"]


def import_command(
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            help="fine-tuning JSONL (chat or preference rows) or OpenAI Evals JSONL files",
            show_default=False,
        ),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(help="a server with OpenAI's API, e.g. https://api.openai.com/v1"),
    ] = None,
    api_key_env: Annotated[
        str, typer.Option(help="the environment variable holding the key for --base-url")
    ] = "OPENAI_API_KEY",
    tenant: Annotated[
        str, typer.Option(help="the tenant the data is imported for (created if new)")
    ] = "default",
    dataset: Annotated[
        str | None, typer.Option(help="dataset name for the files (default: each file's name)")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="where datasets and train configs go [default: HOME/imports/TENANT]"),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="fail, and write no file, if any row is rejected")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    config: ConfigOpt = None,
) -> None:
    """Import stored chat completions and fine-tunes from a server (--base-url), and
    fine-tuning or eval JSONL files, for a tenant. Running it again adds nothing twice.

    Stored completions become the tenant's captures (its consent default and redaction
    apply) and its stored completions; files become datasets, succeeded fine-tuning jobs
    train configs (fine-tunes/JOB.toml), in --out. Exits 3 when nothing could be imported,
    or, with --strict, when any row was rejected.
    """
    from openclone.data.importing import ImportReport, import_files

    if not files and not base_url:
        raise fail("say what to import: FILES, --base-url URL, or both", USAGE)
    settings = read_settings(config)
    target = out or settings.home / "imports" / _slug(tenant)
    report = ImportReport()
    if base_url:
        client = _client(base_url, api_key_env)
        from openclone.data.import_server import import_server

        with opened_store(config) as store, err.status(f"importing from {escape(base_url)}…") as s:

            def progress(kind: str, n: int) -> None:
                s.update(f"importing from {escape(base_url)}: {n} {kind.replace('_', '-')}…")

            server = import_server(
                client, store, tenant, target, redactor=settings.redactor, progress=progress
            )
        _merge(report, server)
    if files:
        with exit_on_error(USAGE):
            import_files(list(files), target, name=dataset, strict=strict, report=report)
    _show(report, as_json)
    if report.accepted == 0 or (strict and report.rejected):
        raise typer.Exit(FELL_SHORT)


def _client(base_url: str, api_key_env: str) -> OpenAI:
    from openai import OpenAI

    from openclone.config import is_loopback

    key = os.environ.get(api_key_env)
    if not key:
        host = urlsplit(base_url).hostname or ""
        if not is_loopback(host):
            raise fail(f"set {api_key_env} to the key for {base_url} (or name another "
                       "variable with --api-key-env)", USAGE)  # fmt: skip
        key = "unused-on-loopback"
    return OpenAI(base_url=base_url, api_key=key, max_retries=2)


def _merge(report: ImportReport, other: ImportReport) -> None:
    report.counts.update(other.counts)
    report.rejected += other.rejected
    report.outputs.update(other.outputs)
    report.notes += other.notes


def _show(report: ImportReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
        return
    table = Table(title="import")
    for column in ("what", "added", "already there", "rejected"):
        table.add_column(column, justify="left" if column == "what" else "right")
    for kind, c in report.as_dict()["counts"].items():
        table.add_row(kind, str(c["added"]), str(c["existing"]), str(c["rejected"]))
    console.print(table)
    for kind, paths in report.outputs.items():
        for path in paths:
            console.print(f"{kind}: {escape(path)}", soft_wrap=True, highlight=False)
    for bad in report.rejected:
        err.print(f"[yellow]rejected[/yellow] {escape(bad.where)}: {escape(bad.reason)}",
                  soft_wrap=True, highlight=False)  # fmt: skip
    for note in report.notes:
        err.print(f"note: {escape(note)}", soft_wrap=True, highlight=False)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "tenant"
