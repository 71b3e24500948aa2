"""``openclone eval``, ``openclone arena leaderboard`` and ``openclone watch``: recipes over
:mod:`openclone.evaluate`.

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
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from openclone.config import Settings, load_settings
from openclone.errors import APIError, ConfigError, ModelNotFound, OpenCloneError

if TYPE_CHECKING:
    from openclone.client import ChatClient
    from openclone.evaluate import EvalConfig, EvalItem, EvalReport, Price, PromptSet
    from openclone.evaluate.arena import Battle
    from openclone.evaluate.drift import DriftReport

__all__ = ["arena_app", "eval_command", "watch_command"]

console = Console()
err = Console(stderr=True)
arena_app = typer.Typer(
    help="Arena ratings from human votes and judge verdicts.", no_args_is_help=True
)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="openclone.toml to read")]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option(
        help="a running server, e.g. http://127.0.0.1:8000/v1 (default: models in process)"
    ),
]
ApiKeyOpt = Annotated[str | None, typer.Option(envvar="OPENAI_API_KEY", help="key for --base-url")]
# Usage errors (a bad file, a bad flag) exit 2 like Typer's own; failures while running exit 1.
USAGE, FAILED, DRIFTED = 2, 1, 3


def _fail(exc: Exception, code: int = FAILED) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc}", soft_wrap=True, markup=True, highlight=False)
    return typer.Exit(code)


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        raise _fail(exc, USAGE) from None


async def _client(settings: Settings, base_url: str | None, api_key: str | None) -> ChatClient:
    from openclone.client import open_client

    return await open_client(settings, base_url, api_key)


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
        bool, typer.Option(help="JSON verdicts enforced by the judge's engine (small judges)")
    ] = False,
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
    detach: Annotated[
        bool, typer.Option("--detach", help="run as a background job (openclone jobs ...)")
    ] = False,
) -> None:
    """Evaluate a candidate against a reference model, judged pairwise with the order swapped."""
    from openclone.evaluate import Price
    from openclone.evaluate.runner import EvalConfig, default_out

    settings = _settings(config)
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
            # --price beats openclone.toml's [prices]
            prices={
                **{m: Price(p.input, p.output) for m, p in settings.prices.items()},
                **_prices(price or []),
            },
        )
        pset = cfg.load_prompts()  # before any model loads: a bad file fails at once
    except (ValueError, OpenCloneError) as exc:
        raise _fail(exc, USAGE) from None
    if detach:
        _detach_eval(cfg, config, base_url, api_key, record)
        return
    err.print(
        f"evaluating [bold]{candidate}[/bold] against [bold]{reference}[/bold] on "
        f"{len(pset.items)} prompts of {pset.name}, judge [bold]{judge}[/bold]"
    )
    try:
        report, paths = asyncio.run(_eval(cfg, pset, settings, base_url, api_key))
    except OpenCloneError as exc:
        raise _fail(exc) from None
    if record:
        _record(settings, report)
    _print_report(report, paths)


def _detach_eval(
    cfg: EvalConfig, config: Path | None, base_url: str | None, api_key: str | None, record: bool
) -> None:
    from openclone.cli_train import announce_job
    from openclone.jobs import start_job

    spec = cfg.to_dict()
    spec["out"] = str(cfg.out.resolve())
    if cfg.split_of is not None:
        spec["split_of"] = str(cfg.split_of.resolve())
    if cfg.prompts and Path(cfg.prompts).exists():  # a file, not a bundled set's name
        spec["prompts"] = str(Path(cfg.prompts).resolve())
    job_spec = {
        "eval": spec,
        "config": str(config.resolve()) if config else None,
        "base_url": base_url,
        "record": record,
    }
    announce_job(start_job("eval", job_spec, api_key=api_key), f"reports in {spec['out']}")


async def _eval(
    cfg: EvalConfig, pset: PromptSet, settings: Settings, base_url: str | None, api_key: str | None
) -> tuple[EvalReport, dict[str, Path]]:
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


def _record(settings: Settings, report: EvalReport) -> None:
    from openclone.evaluate.runner import record_battles

    record_battles(settings, report)


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
        raise _fail(ValueError(f"--source must be human, judge or all, got {source!r}"), USAGE)
    try:
        found: list[Battle] = []
        if battles:
            for path in battles:
                found += read_battles(path)
        else:
            found = _store_battles(_settings(config))
    except OpenCloneError as exc:
        raise _fail(exc, USAGE) from None
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


# ---- watch -----------------------------------------------------------------------------


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

    settings = _settings(config)
    try:
        pset = load_prompt_set(prompts, limit)
    except OpenCloneError as exc:
        raise _fail(exc, USAGE) from None
    path = baseline or settings.home / "drift" / (re.sub(r"[^A-Za-z0-9._-]+", "_", model) + ".json")
    try:
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
    except OpenCloneError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        return
    if drifted:
        raise typer.Exit(DRIFTED)


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
