"""Registry commands: versions, aliases, gated promotion, rollback."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from openclone.cli.common import FAILED, ConfigOpt, console, err, opened_store
from openclone.model_names import parse_model_name

__all__ = ["promote_command", "registry_app", "rollback_command"]

registry_app = typer.Typer(help="Model registry: versions, aliases, lineage.", no_args_is_help=True)


def _report(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"cannot read the eval report {path}: {exc}") from None
    return data


@registry_app.command("register")
def register_command(
    name: Annotated[str, typer.Argument(help="registry name, e.g. support-bot")],
    target: Annotated[
        str | None, typer.Option(help="a model the server serves (catalog or trained name)")
    ] = None,
    gguf: Annotated[Path | None, typer.Option(help="or a GGUF file, served by llama.cpp")] = None,
    lineage: Annotated[str | None, typer.Option(help="JSON: base, dataset hashes, parent…")] = None,
    config: ConfigOpt = None,
) -> None:
    """Register a new immutable version; prints NAME@VERSION."""
    from openclone.registry.versions import register

    engine = {"engine": "llamacpp", "params": {"model_path": str(gguf.resolve())}} if gguf else None
    try:
        extra = json.loads(lineage) if lineage else {}
    except ValueError as exc:
        raise typer.BadParameter(f"--lineage is not JSON: {exc}") from None
    if target:
        extra = {**_trained_lineage(target), **extra}
    with opened_store(config) as store:
        info = register(store, name, target, engine=engine, lineage=extra)
    print(info.pinned)


def _trained_lineage(target: str) -> dict[str, Any]:
    """A trained run's record (base, dataset hash, config) becomes the version's lineage."""
    from openclone.errors import ModelNotFound
    from openclone.registry.trained import trained_lineage
    from openclone.store.trained import get_trained

    try:
        return trained_lineage(get_trained(parse_model_name(target).adapter or target))
    except ModelNotFound:
        return {}


@registry_app.command("adopt")
def adopt_command(config: ConfigOpt = None) -> None:
    """Register trained runs that no version serves yet (runs from before training
    registered its results): each becomes RUN@1, aliased as RUN."""
    from openclone.config import openclone_home
    from openclone.registry.trained import adopt_trained

    with opened_store(config) as store:
        added = adopt_trained(store, openclone_home(config))
    for v in added:
        print(v.pinned)
    if not added:
        err.print("every trained run is in the registry")


@registry_app.command("list")
def list_command(
    name: Annotated[str | None, typer.Argument()] = None, config: ConfigOpt = None
) -> None:
    from openclone.registry.versions import list_versions

    with opened_store(config) as store:
        rows = list_versions(store, name)
    table = Table("version", "serves", "status", "alias", "created")
    for v in rows:
        when = dt.datetime.fromtimestamp(v.created).strftime("%Y-%m-%d %H:%M")
        table.add_row(v.pinned, v.target, v.status, v.name if v.aliased else "", when)
    console.print(table)


@registry_app.command("show")
def show_command(
    name: Annotated[str, typer.Argument(help="NAME or NAME@VERSION")], config: ConfigOpt = None
) -> None:
    from openclone.registry.versions import decisions, get_version

    parsed = parse_model_name(name)
    with opened_store(config) as store:
        v = get_version(store, parsed.base, parsed.version)
        history = decisions(store, parsed.base)
    console.print_json(
        json.dumps({**v.__dict__, "pinned": v.pinned, "decisions": history}, default=str)
    )


@registry_app.command("alias")
def alias_command(
    name: Annotated[str, typer.Argument()],
    version: Annotated[int, typer.Argument()],
    config: ConfigOpt = None,
) -> None:
    """Point NAME at VERSION without the gate (use promote for live traffic)."""
    from openclone.registry.versions import set_alias

    with opened_store(config) as store:
        set_alias(store, name, version)
    console.print(f"{name} -> {name}@{version}")


@registry_app.command("archive")
def archive_command(
    name: Annotated[str, typer.Argument()],
    version: Annotated[int, typer.Argument()],
    config: ConfigOpt = None,
) -> None:
    from openclone.registry.versions import archive

    with opened_store(config) as store:
        archive(store, name, version)
    console.print(f"archived {name}@{version}")


def promote_command(
    name: Annotated[str, typer.Argument()],
    version: Annotated[int, typer.Argument()],
    vs_champion: Annotated[
        Path | None, typer.Option(help="eval report: candidate vs the champion")
    ] = None,
    vs_teacher: Annotated[
        Path | None, typer.Option(help="eval report: candidate vs the teacher")
    ] = None,
    teacher_margin: Annotated[
        float, typer.Option(help="allowed shortfall against the teacher")
    ] = 0.05,
    force: Annotated[
        bool, typer.Option("--force", help="promote even if the gate refuses")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Make NAME@VERSION serve NAME, if the evidence allows; every decision is recorded."""
    from openclone.registry.versions import PromotionRefused, promote

    with opened_store(config) as store:
        try:
            result = promote(
                store, name, version, vs_champion=_report(vs_champion), vs_teacher=_report(vs_teacher),
                teacher_margin=teacher_margin, force=force,
            )  # fmt: skip
        except PromotionRefused as exc:
            err.print(
                f"[red]refused:[/red] {'; '.join(exc.result.reasons)} (recorded; --force overrides)"
            )
            raise typer.Exit(FAILED) from None
    note = f" (forced past: {'; '.join(result.reasons)})" if result.reasons else ""
    console.print(f"{name} -> {name}@{version}{note}")


def rollback_command(name: Annotated[str, typer.Argument()], config: ConfigOpt = None) -> None:
    """Point NAME back at the version it served before."""
    from openclone.registry.versions import rollback

    with opened_store(config) as store:
        back = rollback(store, name)
    console.print(f"{name} -> {name}@{back}")
