"""``openclone distill``: a thin recipe over ``openclone.distill``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from openclone.cli.common import (
    FAILED,
    FELL_SHORT,
    INTERRUPTED,
    USAGE,
    DetachOpt,
    announce_job,
    console,
    err,
    exit_on_error,
    fail,
)
from openclone.errors import ConfigError

if TYPE_CHECKING:  # the library loads on use, so `openclone --help` stays quick
    from openclone.distill import DistillResult
    from openclone.distill.recipe import DistillPlan

__all__ = ["distill_command"]


def distill_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="dataset to write (OpenAI chat JSONL)")],
    count: Annotated[int, typer.Option(min=1, help="rows wanted in --out, earlier runs' included")],
    teacher: Annotated[
        str | None, typer.Option(help="model that writes tasks and answers (default: catalog's)")
    ] = None,
    seeds: Annotated[
        Path | None, typer.Option(help="seed tasks (JSONL/Alpaca JSON); default: the bundled set")
    ] = None,
    prompts: Annotated[
        Path | None,
        typer.Option(help="re-answer these prompts (chat JSONL) instead of writing new tasks"),
    ] = None,
    from_captures: Annotated[
        bool, typer.Option("--from-captures", help="re-answer the store's consented captures")
    ] = False,
    tenant: Annotated[str | None, typer.Option(help="captures: this tenant only")] = None,
    capture_model: Annotated[
        str | None, typer.Option(help="captures: those answered by this model only")
    ] = None,
    since: Annotated[str | None, typer.Option(help="captures: from this date (ISO)")] = None,
    until: Annotated[str | None, typer.Option(help="captures: before this date (ISO)")] = None,
    min_chars: Annotated[int, typer.Option(help="captures: skip shorter conversations")] = 0,
    concurrency: Annotated[int, typer.Option(min=1, help="teacher requests in flight")] = 8,
    rpm: Annotated[
        float | None, typer.Option(min=0.001, help="at most this many requests per minute")
    ] = None,
    threshold: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="drop tasks with ROUGE-L F above this")
    ] = 0.7,
    temperature: Annotated[
        float, typer.Option(min=0.0, max=2.0, help="temperature for writing tasks")
    ] = 1.0,
    answer_temperature: Annotated[float, typer.Option(min=0.0, max=2.0)] = 0.7,
    max_tokens: Annotated[int, typer.Option(min=16, help="token limit of a task list")] = 1024,
    answer_max_tokens: Annotated[int, typer.Option(min=1, help="token limit of an answer")] = 1024,
    tasks_per_request: Annotated[int, typer.Option(min=1)] = 8,
    max_rounds: Annotated[
        int | None, typer.Option(min=1, help="task-writing requests this run may send")
    ] = None,
    keep_truncated: Annotated[
        bool, typer.Option(help="keep answers cut off by --answer-max-tokens")
    ] = False,
    system: Annotated[str | None, typer.Option(help="system prompt for answering")] = None,
    max_attempts: Annotated[int, typer.Option(min=1, help="tries per request")] = 6,
    timeout: Annotated[float, typer.Option(min=0.1, help="seconds per request")] = 300.0,
    price_input: Annotated[
        float | None, typer.Option(min=0.0, help="USD per million input tokens")
    ] = None,
    price_output: Annotated[
        float | None, typer.Option(min=0.0, help="USD per million output tokens")
    ] = None,
    prices: Annotated[
        Path | None,
        typer.Option(help='TOML/JSON file with a prices table: "model" = {input, output}'),
    ] = None,
    random_seed: Annotated[int | None, typer.Option(help="seed of the example sampling")] = None,
    base_url: Annotated[
        str | None, typer.Option(help="teacher behind this OpenAI-compatible URL (.../v1)")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="OPENAI_API_KEY", help="key for --base-url")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="openclone.toml")] = None,
    detach: DetachOpt = False,
) -> None:
    """Make training data with a teacher: Self-Instruct, or new answers to real prompts.

    Without --prompts or --from-captures, the teacher writes new tasks from seed tasks and
    answers them. Rows are appended as they are made; re-run the same command to continue.
    """
    from openclone.distill import DistillError
    from openclone.distill.recipe import DistillRequest, plan, shortfall

    def text(path: Path | None) -> str | None:
        return str(path) if path is not None else None

    req = DistillRequest(
        out=str(out), count=count, teacher=teacher, seeds=text(seeds), prompts=text(prompts),
        from_captures=from_captures, tenant=tenant, capture_model=capture_model, since=since,
        until=until, min_chars=min_chars, concurrency=concurrency, rpm=rpm,
        threshold=threshold, temperature=temperature, answer_temperature=answer_temperature,
        max_tokens=max_tokens, answer_max_tokens=answer_max_tokens,
        tasks_per_request=tasks_per_request, max_rounds=max_rounds,
        keep_truncated=keep_truncated, system=system, max_attempts=max_attempts,
        timeout=timeout, price_input=price_input, price_output=price_output,
        prices=text(prices), random_seed=random_seed, base_url=base_url, config=text(config),
    )  # fmt: skip
    try:
        the_plan = plan(req)  # every mistake shows here, before a job or a request starts
    except (DistillError, ConfigError) as exc:
        raise fail(exc, USAGE) from None
    if detach:
        known = [m.name for m in the_plan.settings.models]
        if not req.base_url and the_plan.config.teacher.split(":", 1)[0] not in known:
            # In the foreground the teacher's client says so; a job would only fail later.
            choices = f"; the catalog has: {', '.join(known)}" if known else ""
            raise fail(f"unknown teacher model {the_plan.config.teacher!r}{choices}", FAILED)
        from openclone.jobs import start_job

        spec = req.job_spec()
        announce_job(start_job("distill", spec, api_key=api_key), f"writing {spec['out']}")
        return
    try:
        with exit_on_error(FAILED):
            result = asyncio.run(_run(the_plan, api_key))
    except KeyboardInterrupt:
        err.print(
            f"[yellow]interrupted.[/yellow] The rows so far are in {out}; run the same "
            "command again to continue.",
            soft_wrap=True,
        )
        raise typer.Exit(INTERRUPTED) from None
    _summary(result)
    if why := shortfall(the_plan, result):
        err.print(f"[yellow]{escape(why)}[/yellow], and run again to continue", soft_wrap=True)
        raise typer.Exit(FELL_SHORT)


async def _run(the_plan: DistillPlan, api_key: str | None) -> DistillResult:
    from openclone.distill import ProgressEvent
    from openclone.distill.recipe import run_plan

    columns = (
        TextColumn("[bold]distill"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err) as bar:
        task = bar.add_task("distill", total=the_plan.config.count, info="")

        def on_progress(e: ProgressEvent) -> None:
            bar.update(task, completed=e.done, info=e.summary())

        return await run_plan(the_plan, api_key, on_progress)


def _summary(result: DistillResult) -> None:
    table = Table(title=f"distill: {result.status}", show_header=False)
    table.add_row("rows", f"{result.kept} ({result.new} new) in {result.out}")
    for reason, n in sorted(result.dropped.items(), key=lambda kv: -kv[1]):
        table.add_row(f"dropped: {reason}", str(n))
    account = result.account
    table.add_row("requests", f"{sum(account.requests.values())} (retries {account.retries})")
    table.add_row("tokens", f"{account.prompt_tokens} in, {account.completion_tokens} out")
    table.add_row("cost", f"${account.cost_usd:.4f}")
    table.add_row("time", f"{result.wall_seconds:.1f} s")
    table.add_row("card", f"{result.card_md}")
    console.print(table)
