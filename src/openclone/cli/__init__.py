"""The ``openclone`` command: a thin layer over the library.

This module only assembles the app. Each command group lives in the module named for it
(``serve``, ``data``, ``distill``, ``train``, ``jobs``, ``store``, ``registry``, ``eval``,
``watch``, ``loop``); what they share (options, consoles, exit codes, ``fail``) is in
:mod:`openclone.cli.common`. The libraries behind the commands load on use, so
``openclone --help`` stays quick.
"""

from __future__ import annotations

import typer

from openclone.cli import encryption, store
from openclone.cli.data import data_app
from openclone.cli.distill import distill_command
from openclone.cli.eval import arena_app, eval_command
from openclone.cli.importing import import_command
from openclone.cli.jobs import jobs_app
from openclone.cli.loop import loop_app
from openclone.cli.registry import promote_command, registry_app, rollback_command
from openclone.cli.serve import chat_command, models_command, serve_command
from openclone.cli.train import export_command, train_command
from openclone.cli.watch import watch_command

__all__ = ["app", "main"]

app = typer.Typer(help="OpenClone: own your ChatGPT.", no_args_is_help=True, add_completion=False)

# The order here is the order of `openclone --help`.
app.command("serve")(serve_command)
app.command("models")(models_command)
app.command("chat")(chat_command)
app.add_typer(data_app, name="data", help="Datasets: near-duplicate filtering and formats.")
app.command("train")(train_command)
app.command("export")(export_command)
app.add_typer(jobs_app, name="jobs")
store.keys_app.command("encryption")(encryption.status_command)
store.keys_app.command("rotate-master")(encryption.rotate_master_command)
store.captures_app.command("decrypt")(encryption.decrypt_command)
app.add_typer(store.keys_app, name="keys")
app.add_typer(store.tenants_app, name="tenants")
app.add_typer(store.captures_app, name="captures")
app.add_typer(store.retention_app, name="retention")
app.add_typer(store.audit_app, name="audit")
app.command("erase")(store.erase_command)
app.command("import")(import_command)
app.command("distill")(distill_command)
app.add_typer(registry_app, name="registry")
app.command("promote")(promote_command)
app.command("rollback")(rollback_command)
app.command("eval")(eval_command)
app.add_typer(arena_app, name="arena")
app.command("watch")(watch_command)
app.add_typer(loop_app, name="loop")


def main() -> None:  # pragma: no cover - console entry for python -m
    app(prog_name="openclone")
