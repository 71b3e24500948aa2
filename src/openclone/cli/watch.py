"""``openclone watch``: replay a pinned prompt set and report drift (:mod:`openclone.evaluate.drift`).

Without ``--base-url`` the catalog's router runs in this process (the models load here);
with it, requests go to a running OpenClone or any OpenAI-compatible server.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from openclone.cli.common import (
    FAILED,
    FELL_SHORT,
    USAGE,
    ApiKeyOpt,
    BaseUrlOpt,
    ConfigOpt,
    console,
    err,
    exit_on_error,
    read_settings,
)
from openclone.config import Settings
from openclone.errors import APIError, ModelNotFound

if TYPE_CHECKING:
    from openclone.evaluate import EvalItem
    from openclone.evaluate.drift import DriftReport
    from openclone.routing.client import ChatClient

__all__ = ["watch_command"]


async def _client(settings: Settings, base_url: str | None, api_key: str | None) -> ChatClient:
    from openclone.routing.client import open_client

    return await open_client(settings, base_url, api_key)


def watch_command(
    model: Annotated[str, typer.Argument(help="the model to watch, typically a closed upstream")],
    prompts: Annotated[
        str | None, typer.Option(help="pinned prompt set: bundled name or file (default: general)")
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(
            help="baseline answers; written on the first run (default: $OPENCLONE_HOME/drift/MODEL.json)"
        ),
    ] = None,
    threshold: Annotated[
        float, typer.Option(min=0, max=1, help="drift when the mean ROUGE-L similarity is below")
    ] = 0.9,
    every: Annotated[
        float | None, typer.Option(min=1, help="check again every SECONDS until Ctrl-C")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="use the first N prompts")] = None,
    max_tokens: Annotated[
        int, typer.Option(min=1, help="answer length (pinned by the baseline)")
    ] = 256,
    concurrency: Annotated[int, typer.Option(min=1, help="requests in flight")] = 4,
    base_url: BaseUrlOpt = None,
    api_key: ApiKeyOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Replay a pinned prompt set greedily and report when the answers drift from the baseline.

    Exit status: 0 no drift (or baseline written), 3 drift, 1 failure, 2 bad usage.
    """
    from openclone.evaluate.sets import load_prompt_set

    settings = read_settings(config)
    with exit_on_error(USAGE):
        pset = load_prompt_set(prompts, limit)
    path = baseline or settings.home / "drift" / (re.sub(r"[^A-Za-z0-9._-]+", "_", model) + ".json")
    try:
        with exit_on_error(FAILED):
            drifted = asyncio.run(
                _watch(
                    settings,
                    base_url,
                    api_key,
                    model,
                    pset.items,
                    path,
                    threshold,
                    every,
                    max_tokens,
                    concurrency,
                )
            )
    except KeyboardInterrupt:
        return
    if drifted:
        raise typer.Exit(FELL_SHORT)


async def _watch(
    settings: Settings,
    base_url: str | None,
    api_key: str | None,
    model: str,
    items: list[EvalItem],
    path: Path,
    threshold: float,
    every: float | None,
    max_tokens: int,
    concurrency: int,
) -> bool:
    from openclone.evaluate.drift import watch

    client = await _client(settings, base_url, api_key)
    try:
        while True:
            try:
                report = await watch(
                    client,
                    model,
                    items,
                    path,
                    threshold,
                    max_tokens=max_tokens,
                    concurrency=concurrency,
                )
            except APIError as exc:
                # On a schedule, an upstream outage is one failed check, not the end of the watch.
                if every is None or isinstance(exc, ModelNotFound):
                    raise
                err.print(f"[yellow]check failed:[/yellow] {exc}", soft_wrap=True)
            else:
                _print_drift(report)
                if every is None:
                    return report.drifted
            await asyncio.sleep(every)
    finally:
        await client.aclose()


def _print_drift(report: DriftReport) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    if report.created_baseline:
        console.print(
            f"{stamp} baseline written: {report.baseline_path} ({report.n} prompts)", soft_wrap=True
        )
        return
    status = "[red]DRIFT[/red]" if report.drifted else "[green]stable[/green]"
    console.print(
        f"{stamp} {status} {report.model}: mean similarity {report.mean_similarity:.3f} "
        f"(threshold {report.threshold:g}), {report.changed_share:.0%} of {report.n} answers changed",
        soft_wrap=True,
    )
