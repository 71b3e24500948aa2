"""``openclone eval`` and ``openclone arena leaderboard``: recipes over :mod:`openclone.evaluate`.

Without ``--base-url`` the catalog's router runs in this process (the models load here);
with it, requests go to a running OpenClone or any OpenAI-compatible server.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from openclone.cli.common import (
    FAILED,
    USAGE,
    ApiKeyOpt,
    BaseUrlOpt,
    ConfigOpt,
    DetachOpt,
    announce_job,
    console,
    err,
    exit_on_error,
    fail,
    read_settings,
)
from openclone.config import Settings
from openclone.errors import OpenCloneError

if TYPE_CHECKING:
    from openclone.evaluate import EvalConfig, EvalReport, Price, PromptSet
    from openclone.evaluate.arena import Battle
    from openclone.evaluate.runner import EvalRun

__all__ = ["arena_app", "eval_command"]

arena_app = typer.Typer(
    help="Arena ratings from human votes and judge verdicts.", no_args_is_help=True
)


def _prices(specs: list[str]) -> dict[str, Price]:
    from openclone.evaluate import Price

    out = {}
    for spec in specs:
        m = re.fullmatch(r"(.+)=([0-9.]+)[,:/]([0-9.]+)", spec.strip())
        if not m:
            raise typer.BadParameter(
                f"{spec!r}: expected MODEL=INPUT,OUTPUT in USD per million tokens, "
                "e.g. gpt-4o=2.5,10",
                param_hint="--price",
            )
        out[m.group(1)] = Price(float(m.group(2)), float(m.group(3)))
    return out


# ---- eval ------------------------------------------------------------------------------


def eval_command(
    candidate: Annotated[str, typer.Option(help="the model to evaluate")],
    reference: Annotated[str, typer.Option(help="what it is compared with: teacher or champion")],
    judge: Annotated[
        str | None, typer.Option(help="the model that compares answers (default: default model)")
    ] = None,
    prompts: Annotated[
        str | None,
        typer.Option(
            help="bundled set name or eval file: chat JSONL or Alpaca JSON (default: general)"
        ),
    ] = None,
    split_of: Annotated[
        Path | None, typer.Option(help="evaluate on the held-out split of this training dataset")
    ] = None,
    fraction: Annotated[float, typer.Option(help="held-out share for --split-of")] = 0.05,
    out: Annotated[
        Path | None, typer.Option(help="report folder (default: $OPENCLONE_HOME/evals/…)")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="use the first N prompts")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="requests in flight")] = 4,
    max_tokens: Annotated[int, typer.Option(min=1, help="answer length limit")] = 512,
    judge_max_tokens: Annotated[int, typer.Option(min=1, help="judge reply length limit")] = 512,
    judge_json: Annotated[
        bool,
        typer.Option(help="JSON verdicts enforced by the judge's engine where it can"),
    ] = True,
    seed: Annotated[int, typer.Option(help="sampling and bootstrap seed")] = 0,
    price: Annotated[
        list[str] | None,
        typer.Option(help="MODEL=INPUT,OUTPUT USD per million tokens; repeatable"),
    ] = None,
    record: Annotated[
        bool, typer.Option(help="add the judge's outcomes to the arena's battles in the store")
    ] = True,
    base_url: BaseUrlOpt = None,
    api_key: ApiKeyOpt = None,
    config: ConfigOpt = None,
    detach: DetachOpt = False,
) -> None:
    """Evaluate a candidate against a reference model, judged pairwise with the order swapped."""
    from openclone.evaluate import Price
    from openclone.evaluate.runner import EvalConfig, EvalJob, default_out

    settings = read_settings(config)
    judge = judge or settings.default_model or ""
    try:
        cfg = EvalConfig(
            candidate=candidate,
            reference=reference,
            judge=judge,
            out=out or default_out(settings.home, candidate, reference),
            prompts=prompts,
            split_of=split_of,
            fraction=fraction,
            limit=limit,
            concurrency=concurrency,
            max_tokens=max_tokens,
            judge_max_tokens=judge_max_tokens,
            judge_json=judge_json,
            seed=seed,
            record=record,
            # --price beats openclone.toml's [prices]
            prices={
                **{m: Price(p.input, p.output) for m, p in settings.prices.items()},
                **_prices(price or []),
            },
        )
        pset = cfg.load_prompts()  # before any model loads: a bad file fails at once
    except (ValueError, OpenCloneError) as exc:
        raise fail(exc, USAGE) from None
    if detach:
        from openclone.jobs import start_job

        spec = EvalJob(cfg, config, base_url).to_spec()
        job = start_job("eval", spec, api_key=api_key)
        announce_job(job, f"reports in {spec['eval']['out']}")
        return
    err.print(
        f"evaluating [bold]{candidate}[/bold] against [bold]{reference}[/bold] on "
        f"{len(pset.items)} prompts of {pset.name}, judge [bold]{judge}[/bold]"
    )
    with exit_on_error(FAILED):
        run = asyncio.run(_eval(cfg, pset, settings, base_url, api_key))
    _print_report(run.report, run.paths)


async def _eval(
    cfg: EvalConfig, pset: PromptSet, settings: Settings, base_url: str | None, api_key: str | None
) -> EvalRun:
    from openclone.evaluate.runner import open_and_run_eval

    columns = (TextColumn("[bold]eval"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("eval", total=len(pset.items))
        return await open_and_run_eval(
            settings,
            cfg,
            base_url,
            api_key,
            lambda done, total: bar.update(task, completed=done),
            pset,
        )


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def _print_report(report: EvalReport, paths: dict[str, Path]) -> None:
    table = Table(title=report.verdict_line(), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("win rate (ties half)", _pct(report.win_rate))
    table.add_row("95% bootstrap CI", f"{_pct(report.ci_low)} - {_pct(report.ci_high)}")
    table.add_row("length-controlled", _pct(report.lc_win_rate))
    table.add_row("wins / ties / losses", f"{report.wins} / {report.ties} / {report.losses}")
    table.add_row("judged prompts", str(report.n))
    table.add_row("unparsed verdicts", str(report.unparsed))
    table.add_row("errors", str(report.errors))
    for side, name in (("candidate", report.candidate), ("reference", report.reference)):
        s = report.summary[side]
        lat = "n/a" if s.latency_mean_s is None else f"{s.latency_mean_s:.2f} s"
        cost = "n/a" if s.cost_per_answer is None else f"${s.cost_per_answer:.6f}"
        table.add_row(f"{side} {name}: latency, cost per answer", f"{lat}, {cost}")
        for metric, value in s.metrics.items():
            table.add_row(f"{side} {name}: {metric}", f"{value:.3f}")
    console.print(table)
    for kind, path in paths.items():
        console.print(f"{kind}: {path}", soft_wrap=True, highlight=False)


# ---- arena -----------------------------------------------------------------------------


@arena_app.callback()
def arena() -> None:
    """Arena ratings from human votes and judge verdicts."""


@arena_app.command("leaderboard")
def leaderboard_command(
    battles: Annotated[
        list[Path] | None,
        typer.Option(help="battles JSONL (repeatable); default: the store's votes and verdicts"),
    ] = None,
    source: Annotated[str, typer.Option(help="human, judge or all")] = "all",
    bootstrap: Annotated[int, typer.Option(min=0, help="resamples for the 95% intervals")] = 200,
    config: ConfigOpt = None,
) -> None:
    """Bradley-Terry ratings (Elo scale, mean 1000) with bootstrap intervals."""
    from openclone.evaluate.arena import leaderboard, read_battles

    if source not in ("human", "judge", "all"):
        raise fail(f"--source must be human, judge or all, got {source!r}", USAGE)
    with exit_on_error(USAGE):
        found: list[Battle] = []
        if battles:
            for path in battles:
                found += read_battles(path)
        else:
            found = _store_battles(read_settings(config))
    rows = leaderboard(found, source, bootstrap=bootstrap)
    if not rows:
        console.print(f"no {'' if source == 'all' else source + ' '}battles yet")
        return
    table = Table("#", "model", "rating", "95% CI", "battles", "wins", title=f"arena ({source})")
    for rank, r in enumerate(rows, 1):
        table.add_row(
            str(rank),
            r.model,
            f"{r.rating:.0f}",
            f"{r.ci_low:.0f} - {r.ci_high:.0f}",
            str(r.battles),
            f"{r.wins:g}",
        )
    console.print(table)


def _store_battles(settings: Settings) -> list[Battle]:
    from openclone.store import open_store
    from openclone.store.votes import load_battles

    store = open_store(settings)
    try:
        return load_battles(store)
    finally:
        store.close()
