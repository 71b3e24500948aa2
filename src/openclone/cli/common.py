"""What every command shares: the consoles, the common options, the exit codes, one way to fail.

Exit codes, the same for every command:

    0    done
    1    FAILED       the work was started and failed (an engine, the store, the network)
    2    USAGE        a bad flag, file or setting, found before anything ran (Typer's own too)
    3    FELL_SHORT   it ran, but the result falls short: answers drifted, a budget ran out
    130  INTERRUPTED  stopped by Ctrl-C; what was done so far is kept

An OpenClone error becomes one red line on stderr and the exit code of the phase it was
raised in (:func:`exit_on_error`): USAGE while a command reads its flags, files and
settings, FAILED once it runs. Never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from openclone.config import Settings, load_settings
from openclone.errors import ConfigError, OpenCloneError

if TYPE_CHECKING:
    from openclone.jobs import JobStatus
    from openclone.store import Store

__all__ = [
    "FAILED",
    "FELL_SHORT",
    "INTERRUPTED",
    "USAGE",
    "ApiKeyOpt",
    "BaseUrlOpt",
    "ConfigOpt",
    "DetachOpt",
    "announce_job",
    "console",
    "err",
    "exit_on_error",
    "fail",
    "opened_store",
    "read_settings",
]

console = Console()  # results: what a script reads
err = Console(stderr=True)  # progress, errors and notes: what a person reads

FAILED, USAGE, FELL_SHORT, INTERRUPTED = 1, 2, 3, 130

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="openclone.toml to read")]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option(
        help="a running server, e.g. http://127.0.0.1:8000/v1 (default: models in process)"
    ),
]
ApiKeyOpt = Annotated[str | None, typer.Option(envvar="OPENAI_API_KEY", help="key for --base-url")]
DetachOpt = Annotated[
    bool, typer.Option("--detach", help="run as a background job (openclone jobs ...)")
]


def fail(message: object, code: int = FAILED) -> typer.Exit:
    """Print ``message`` as one error line on stderr; return the exit to raise.

    ``raise fail(exc, USAGE) from None``: the raise stays visible where the command ends.
    """
    err.print(f"[red]error:[/red] {escape(str(message))}", soft_wrap=True, highlight=False)
    return typer.Exit(code)


@contextmanager
def exit_on_error(code: int) -> Iterator[None]:
    """An OpenClone error raised inside ends the command: one error line, exit ``code``."""
    try:
        yield
    except OpenCloneError as exc:
        raise fail(exc, code) from None


def read_settings(config: Path | None, **overrides: object) -> Settings:
    """The settings (``--config``, ``OPENCLONE_*``, ``overrides``); a bad value exits USAGE."""
    try:
        return load_settings(config, **overrides)
    except ConfigError as exc:
        raise fail(exc, USAGE) from None


@contextmanager
def opened_store(config: Path | None) -> Iterator[Store]:
    """The settings' store, closed at the end. A store that cannot be opened exits USAGE;
    an OpenClone error while using it (an unknown key, tenant, version) exits FAILED."""
    from openclone.store import open_store

    with exit_on_error(USAGE):
        store = open_store(load_settings(config))
    try:
        with exit_on_error(FAILED):
            yield store
    finally:
        store.close()


def announce_job(job: JobStatus, what: str) -> None:
    """What `--detach` prints: the job's id and how to follow or stop it."""
    console.print(f"started job [bold]{job.id}[/bold] ({what})")
    console.print(f"  openclone jobs logs {job.id} --follow   |   openclone jobs cancel {job.id}")
