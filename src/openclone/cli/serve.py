"""``openclone serve``, ``openclone models`` and ``openclone chat``: the catalog's models."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from openclone.cli.common import (
    FAILED,
    USAGE,
    ConfigOpt,
    console,
    err,
    exit_on_error,
    fail,
    read_settings,
)
from openclone.config import ModelConfig

__all__ = ["chat_command", "models_command", "serve_command"]


def _file_model(path: Path) -> ModelConfig:
    if path.suffix.lower() != ".gguf":
        raise fail(f"--model expects a .gguf file, got {path}", USAGE)
    if not path.is_file():
        raise fail(f"model file not found: {path}", USAGE)
    name = path.stem.lower().replace(" ", "-")
    return ModelConfig(name=name, engine="llamacpp", params={"model_path": str(path.resolve())})


@contextmanager
def _tls_errors() -> Iterator[None]:
    try:
        yield
    except ssl.SSLError as exc:  # a key that is not the certificate's, a PEM that is not one
        raise fail(f"cannot serve HTTPS with --tls-cert/--tls-key: {exc}", USAGE) from None


def serve_command(
    host: Annotated[str | None, typer.Option(help="address to bind (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default 8000)")] = None,
    config: ConfigOpt = None,
    model: Annotated[
        Path | None, typer.Option(help="serve this GGUF file alone, no config needed")
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option(help="PEM certificate (chain): serve HTTPS; needs --tls-key")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert")] = None,
    loops: Annotated[
        bool | None,
        typer.Option("--loops", help="also run the loops on their cadence (run_loops)"),
    ] = None,
) -> None:
    """Serve the catalog behind an OpenAI-compatible API."""
    import uvicorn

    from openclone.gateway.app import create_app

    if (tls_cert is None) != (tls_key is None):
        raise fail("--tls-cert and --tls-key go together", USAGE)
    for given in (tls_cert, tls_key):
        if given is not None and not given.is_file():
            raise fail(f"TLS file not found: {given}", USAGE)
    models = [_file_model(model)] if model else None
    settings = read_settings(config, host=host, port=port, models=models, run_loops=loops)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    names = ", ".join(m.name for m in settings.models)
    scheme = "https" if tls_cert else "http"
    err.print(
        f"OpenClone serving [bold]{names}[/bold] on {scheme}://{settings.host}:{settings.port}/v1"
    )
    with exit_on_error(FAILED), _tls_errors():
        uvicorn.run(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            access_log=False,  # per-request log lines cost more than the gateway itself
            timeout_graceful_shutdown=10,
            ssl_certfile=str(tls_cert) if tls_cert else None,
            ssl_keyfile=str(tls_key) if tls_key else None,
        )


def models_command(config: ConfigOpt = None) -> None:
    """List the model catalog."""
    settings = read_settings(config)
    table = Table("name", "engine", "replicas", "description")
    for m in settings.models:
        default = " (default)" if m.name == settings.default_model else ""
        table.add_row(m.name + default, m.engine, str(len(m.replica_specs())), m.description or "")
    console.print(table)


def chat_command(
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
    from openclone.cli.terminal_chat import run_chat

    settings = read_settings(config)
    try:
        with exit_on_error(FAILED):
            asyncio.run(run_chat(settings, model, url, api_key, system, temperature, console))
    except KeyboardInterrupt:
        pass
