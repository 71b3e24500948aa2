"""The ``openclone`` command: a thin layer over the library."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from openclone.config import ModelConfig, Settings, load_settings
from openclone.errors import APIError, ConfigError, OpenCloneError

app = typer.Typer(help="OpenClone: own your ChatGPT.", no_args_is_help=True, add_completion=False)
console = Console()
err = Console(stderr=True)


def _mount() -> None:
    # Sub-apps register here; each module keeps its own commands (the CLI stays thin).
    from openclone.cli_data import data_app

    app.add_typer(data_app, name="data", help="Datasets: near-duplicate filtering and formats.")
    from openclone.cli_train import export_command, jobs_app, train_command

    app.command("train")(train_command)
    app.command("export")(export_command)
    app.add_typer(jobs_app, name="jobs")
    from openclone import cli_store

    app.add_typer(cli_store.keys_app, name="keys")
    app.add_typer(cli_store.tenants_app, name="tenants")
    app.add_typer(cli_store.captures_app, name="captures")
    app.add_typer(cli_store.retention_app, name="retention")
    app.add_typer(cli_store.audit_app, name="audit")
    app.command("erase")(cli_store.erase_command)
    from openclone.cli_distill import mount as mount_distill

    mount_distill(app)
    from openclone import cli_registry

    app.add_typer(cli_registry.registry_app, name="registry")
    app.command("promote")(cli_registry.promote_command)
    app.command("rollback")(cli_registry.rollback_command)
    from openclone import cli_eval

    app.command("eval")(cli_eval.eval_command)
    app.add_typer(cli_eval.arena_app, name="arena")
    app.command("watch")(cli_eval.watch_command)


ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="openclone.toml to read")]


def _settings(config: Path | None, **overrides: object) -> Settings:
    try:
        return load_settings(config, **overrides)
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def _file_model(path: Path) -> ModelConfig:
    if path.suffix.lower() != ".gguf":
        err.print(f"[red]error:[/red] --model expects a .gguf file, got {path}")
        raise typer.Exit(2)
    if not path.is_file():
        err.print(f"[red]error:[/red] model file not found: {path}")
        raise typer.Exit(2)
    name = path.stem.lower().replace(" ", "-")
    return ModelConfig(name=name, engine="llamacpp", params={"model_path": str(path.resolve())})


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to bind (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default 8000)")] = None,
    config: ConfigOpt = None,
    model: Annotated[
        Path | None, typer.Option(help="serve this GGUF file alone, no config needed")
    ] = None,
) -> None:
    """Serve the catalog behind an OpenAI-compatible API."""
    import uvicorn

    from openclone.gateway.app import create_app

    models = [_file_model(model)] if model else None
    settings = _settings(config, host=host, port=port, models=models)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    names = ", ".join(m.name for m in settings.models)
    err.print(
        f"OpenClone serving [bold]{names}[/bold] on http://{settings.host}:{settings.port}/v1"
    )
    try:
        uvicorn.run(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            access_log=False,  # per-request log lines cost more than the gateway itself
            timeout_graceful_shutdown=10,
        )
    except OpenCloneError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


@app.command("models")
def list_models(config: ConfigOpt = None) -> None:
    """List the model catalog."""
    settings = _settings(config)
    table = Table("name", "engine", "replicas", "description")
    for m in settings.models:
        default = " (default)" if m.name == settings.default_model else ""
        table.add_row(m.name + default, m.engine, str(len(m.replica_specs())), m.description or "")
    console.print(table)


@app.command()
def chat(
    model: Annotated[
        str | None, typer.Option(help="catalog model (default: the default model)")
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(help="talk to a running server instead, e.g. http://127.0.0.1:8000/v1"),
    ] = None,
    api_key: Annotated[str, typer.Option(envvar="OPENAI_API_KEY", help="key for --url")] = "none",
    system: Annotated[str | None, typer.Option(help="system prompt")] = None,
    temperature: Annotated[float, typer.Option(min=0, max=2)] = 0.7,
    config: ConfigOpt = None,
) -> None:
    """Chat in the terminal, streaming; an empty line or Ctrl-D ends it."""
    from openclone.terminal_chat import run_chat

    settings = _settings(config)
    try:
        asyncio.run(run_chat(settings, model, url, api_key, system, temperature, console))
    except (OpenCloneError, APIError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass


_mount()


def main() -> None:  # pragma: no cover - console entry for python -m
    app(prog_name="openclone")


if __name__ == "__main__":  # pragma: no cover
    main()
