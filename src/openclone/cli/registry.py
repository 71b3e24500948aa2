"""Registry commands: versions, aliases, gated promotion, rollback."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from openclone.cli.common import FAILED, ConfigOpt, console, err, exit_on_error, opened_store
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
    bake: Annotated[
        bool,
        typer.Option(
            "--bake", help="serve a trained run as its own merged GGUF (a new version) instead"
        ),
    ] = False,
    quant: Annotated[
        str, typer.Option(help="GGUF type of a --bake: q8_0, q6_k, q5_k_m, q4_k_m…")
    ] = "q8_0",
    config: ConfigOpt = None,
) -> None:
    """Make NAME@VERSION serve NAME, if the evidence allows; every decision is recorded."""
    from openclone.registry.versions import PromotionRefused, promote

    with opened_store(config) as store:
        if bake:
            version = _bake(store, name, version, quant, config)
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


def _bake(store: Any, name: str, version: int, quant: str, config: Path | None) -> int:
    """Bake NAME@VERSION (:func:`openclone.registry.bake.bake`); the version the promotion
    then goes to."""
    from openclone.config import openclone_home
    from openclone.registry.bake import bake

    with exit_on_error(FAILED), err.status(f"baking {name}@{version} into a {quant} GGUF…"):
        baked, gguf = bake(store, name, version, quant, home=openclone_home(config))
    console.print(f"baked {name}@{version} into {baked.pinned} ({gguf})")
    return baked.version


def rollback_command(name: Annotated[str, typer.Argument()], config: ConfigOpt = None) -> None:
    """Point NAME back at the version it served before."""
    from openclone.registry.versions import rollback

    with opened_store(config) as store:
        back = rollback(store, name)
    console.print(f"{name} -> {name}@{back}")


# ---- live traffic: shadow and canary ---------------------------------------------------

CandidateOpt = Annotated[str, typer.Option(help="the version to try: NAME@N")]


@registry_app.command("shadow")
def shadow_command(
    name: Annotated[str, typer.Argument(help="the alias whose traffic is shadowed")],
    candidate: CandidateOpt,
    share: Annotated[float, typer.Option(help="share of NAME's chat requests shadowed")] = 0.2,
    budget: Annotated[int, typer.Option(help="pairs to keep, at most")] = 50,
    config: ConfigOpt = None,
) -> None:
    """Answer a share of NAME's chat requests with CANDIDATE too, in the background (never
    returned to callers), and keep the pairs for the judge (`openclone loop` reads them)."""
    from openclone.registry.splits import start_shadow

    with opened_store(config) as store:
        split = start_shadow(store, name, candidate, share, budget)
    console.print(
        f"shadowing {split.candidate} on {share:.0%} of {name}'s chat requests, up to "
        f"{budget} pairs (split {split.id})"
    )


@registry_app.command("canary")
def canary_command(
    name: Annotated[str, typer.Argument(help="the alias whose traffic is split")],
    candidate: CandidateOpt,
    share: Annotated[float, typer.Option(help="share of NAME's requests it serves")] = 0.1,
    min_requests: Annotated[int, typer.Option(help="canary requests before a rollback")] = 10,
    max_error_increase: Annotated[
        float, typer.Option(help="roll back above the incumbent's error rate plus this")
    ] = 0.05,
    max_latency_ratio: Annotated[
        float, typer.Option(help="roll back above this times the incumbent's mean latency")
    ] = 2.0,
    config: ConfigOpt = None,
) -> None:
    """Serve a sticky share of NAME's requests (per conversation or person) from CANDIDATE;
    gateways roll it back when its errors or latency regress. `promote` ends it."""
    from openclone.registry.splits import start_canary

    policy = {"min_requests": min_requests, "max_error_increase": max_error_increase,
              "max_latency_ratio": max_latency_ratio}  # fmt: skip
    with opened_store(config) as store:
        split = start_canary(store, name, candidate, share, policy)
    console.print(
        f"canary: {split.candidate} serves {share:.0%} of {name}'s requests (split {split.id})"
    )


@registry_app.command("splits")
def splits_command(
    name: Annotated[str | None, typer.Argument()] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON for scripts")] = False,
    config: ConfigOpt = None,
) -> None:
    """Shadows and canaries, newest first: state, pairs kept, requests per arm."""
    from openclone.store.splits import arm_totals, list_splits

    with opened_store(config) as store:
        splits = list_splits(store, name)
        totals = arm_totals(store, [s.id for s in splits if s.kind == "canary"])
    rows = [
        {**s.to_dict(), "arms": {a: c.__dict__ for a, c in totals.get(s.id, {}).items()}}
        for s in splits
    ]
    if as_json:
        print(json.dumps({"splits": rows}, indent=2))
        return
    table = Table("name", "kind", "candidate", "share", "state", "pairs / requests", "reason")
    for row in rows:
        arms = row["arms"]
        if row["kind"] == "shadow":
            seen = f"{row['pairs']}/{row['budget']} pairs"
        else:
            seen = ", ".join(f"{a} {c['requests']} ({c['errors']} errors)" for a, c in arms.items())
            if row["budget"]:  # the incumbent's second answers, for a loop's judge
                seen = ", ".join(x for x in (seen, f"{row['pairs']}/{row['budget']} pairs") if x)
        table.add_row(row["name"], row["kind"], row["candidate"], f"{row['share']:.0%}",
                      row["state"], seen or "-", row["reason"] or "")  # fmt: skip
    console.print(table)


@registry_app.command("stop-split")
def stop_split_command(
    name: Annotated[str, typer.Argument()],
    kind: Annotated[str | None, typer.Option(help="shadow or canary (default: both)")] = None,
    config: ConfigOpt = None,
) -> None:
    """End NAME's active shadow and/or canary; the alias keeps serving its version."""
    from openclone.registry.splits import stop

    with opened_store(config) as store:
        ended = stop(store, name, kind)
    for split in ended:
        console.print(f"stopped the {split.kind} of {split.candidate}")
    if not ended:
        err.print(f"{name} has no active shadow or canary")
