"""``openclone loop``: run, schedule, watch and steer the retraining loops of openclone.toml."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from openclone.cli.common import (
    FAILED,
    INTERRUPTED,
    USAGE,
    ConfigOpt,
    console,
    err,
    exit_on_error,
    read_settings,
)

if TYPE_CHECKING:  # the library loads on use, so `openclone --help` stays quick
    from openclone.config import Settings
    from openclone.loop import LoopConfig
    from openclone.loop.state import RunInfo

__all__ = ["loop_app"]

loop_app = typer.Typer(
    help="Retraining loops ([[loops]] in openclone.toml): run, schedule, history.",
    no_args_is_help=True,
)
NameArg = Annotated[str, typer.Argument(help="the loop's name in [[loops]]")]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON for scripts")]


def _loop(config: Path | None, name: str) -> tuple[Settings, LoopConfig]:
    from openclone.loop import get_loop

    settings = read_settings(config)
    with exit_on_error(USAGE):
        return settings, get_loop(settings, name)


def _say(message: str) -> None:
    err.print(f"[dim]loop:[/dim] {escape(message)}", soft_wrap=True, highlight=False)


def _show(run: RunInfo) -> None:
    table = Table(
        "step", "state", "counts", "seconds", "cost", title=f"{run.loop} run {run.number}"
    )
    for step in run.steps:
        info = step.to_dict()
        counts = ", ".join(f"{k} {v}" for k, v in step.counts.items() if v) or "-"
        seconds = "-" if info["seconds"] is None else f"{info['seconds']:.1f}"
        table.add_row(step.name, step.state, counts, seconds, f"${step.cost_usd:.4f}")
    console.print(table)
    console.print(f"status: {run.status}  ·  decision: {escape(run.decision or '-')}")


@loop_app.command("run")
def run_command(name: NameArg, config: ConfigOpt = None) -> None:
    """Run the loop once now, or continue its unfinished run where it stopped."""
    from openclone.loop import LoopRunner

    settings, loop = _loop(config, name)
    try:
        with exit_on_error(FAILED):
            run = LoopRunner(loop, settings, _say).run()
    except KeyboardInterrupt:
        err.print(f"[yellow]interrupted.[/yellow] `openclone loop run {name}` continues the run.")
        raise typer.Exit(INTERRUPTED) from None
    _show(run)


@loop_app.command("start")
def start_command(
    poll: Annotated[
        float, typer.Option(min=1.0, help="seconds between looks for due loops")
    ] = 60.0,
    once: Annotated[bool, typer.Option("--once", help="run what is due now, then exit")] = False,
    parent: Annotated[
        int | None, typer.Option(hidden=True, help="the server's pid: stop when it dies")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Keep every loop on its cadence (`every`), until Ctrl-C or SIGTERM (the run under
    way is recorded paused, and the next start continues it)."""
    from openclone.loop.runner import LoopStopped
    from openclone.loop.schedule import serve

    settings = read_settings(config)
    stop = threading.Event()

    def on_term(signum: int, frame: object) -> None:
        # A training step can take hours: stop now, not after it (it resumes from its
        # checkpoint). Once only, so the run's own recording of the stop is not cut short.
        if not stop.is_set():
            stop.set()
            raise LoopStopped

    signal.signal(signal.SIGTERM, on_term)
    if parent is not None:
        _stop_with(parent)
    try:
        with exit_on_error(USAGE):
            started = serve(settings, _say, poll=poll, once=once, stop=stop)
    except KeyboardInterrupt:
        err.print("[yellow]stopped.[/yellow] An unfinished run continues on the next start.")
        raise typer.Exit(INTERRUPTED) from None
    except LoopStopped:
        err.print("stopped (SIGTERM); an unfinished run continues on the next start")
        return
    if once:
        err.print(f"{started} run(s) started")


def _stop_with(parent: int) -> None:
    """SIGTERM this process when ``parent`` (the server) dies, even by ``kill -9``, as the
    engine workers do (Linux; elsewhere the run's lease frees it once this one is gone)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


def _money(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"${value:.4g}{unit}"


@loop_app.command("status")
def status_command(json_out: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Every loop: paused or not, its champion, its last run, when it runs next, the cost
    crossover and, for a closed model with a shutdown date, the days left."""
    from openclone.loop import load_loops
    from openclone.loop.status import loop_status
    from openclone.store import open_store

    settings = read_settings(config)
    with exit_on_error(USAGE):
        loops = load_loops(settings)
        store = open_store(settings)
    try:
        rows = [loop_status(store, settings, loop) for loop in loops]
    finally:
        store.close()
    if json_out:
        print(json.dumps({"loops": rows}, indent=2))
        return
    table = Table("loop", "model", "champion", "state", "last run", "decision", "next")
    for row in rows:
        last = row["last_run"] or {}
        run = f"{last['number']}: {last['status']}" if last else "-"
        state = "paused" if row["paused"] else "active"
        nxt = row["next_due"] or ("captures" if row["every"] == "off" else "now")
        if row["every_captures"]:
            nxt += f" (or {row['new_captures']}/{row['every_captures']} captures)"
        table.add_row(row["name"], row["model"], row["champion"] or "-", state, run,
                      escape(last.get("decision") or "-"), nxt)  # fmt: skip
    console.print(table)
    for row in rows:
        c, dep = row["costs"], row["deprecation"]
        spend = c["last_run"] or {}
        even = c["break_even_tokens_per_day"]
        console.print(
            f"{row['name']}: serving {_money(c['serving_usd_per_1m'], '/1M')} vs API "
            f"{_money(c['api_usd_per_1m'], '/1M')} ({c['api_model'] or 'no [prices]'}), "
            f"{c['tokens_per_day']:.0f} tokens/day, break-even "
            f"{'-' if even is None else f'{even:.0f}'} tokens/day; last run: teacher "
            f"{_money(spend.get('teacher_usd'))}, training {_money(spend.get('training_usd'))}",
            highlight=False,
            markup=False,  # "[prices]" and names are text, not Rich markup
        )
        if dep is not None:
            rate = dep["student_win_rate"]
            when = (
                f"shuts down {dep['shutdown']}: {dep['days_left']} days left"
                if dep["shutdown"] is not None
                else "is deprecated, no shutdown date announced"
            )
            console.print(
                f"{row['name']}: {dep['model']} {when}, student win rate vs it "
                f"{'n/a' if rate is None else f'{rate:.0%}'}"
                + (" (cadence raised)" if dep["near"] else ""),
                highlight=False,
                markup=False,
            )
    if not rows:
        err.print("no loops: add [[loops]] to openclone.toml")


@loop_app.command("create")
def create_command(
    name: NameArg,
    model: Annotated[str, typer.Option(help="the registry name the loop keeps promoted")],
    tenant: Annotated[str, typer.Option(help="whose consented captures it learns from")],
    teacher: Annotated[str, typer.Option(help="catalog model that writes the answers")],
    student_base: Annotated[
        str | None, typer.Option(help="catalog model or path the candidate is trained on")
    ] = None,
    judge: Annotated[str | None, typer.Option(help="catalog model that judges")] = None,
    every: Annotated[str, typer.Option(help='cadence: "1d", "12h", or "off"')] = "1d",
    every_captures: Annotated[
        int | None, typer.Option(min=1, help="also run once N new captures arrived")
    ] = None,
    examples: Annotated[int | None, typer.Option(min=1, help="budget: teacher rows")] = None,
    train_steps: Annotated[int | None, typer.Option(min=1, help="budget: training steps")] = None,
    eval_prompts: Annotated[int | None, typer.Option(min=1, help="budget: prompts judged")] = None,
    teacher_usd: Annotated[
        float | None, typer.Option(help="budget: teacher dollars per run")
    ] = None,
    gpu_hours: Annotated[
        float | None, typer.Option(help="budget: training machine hours per run")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Add a loop to openclone.toml: a checked loops block, for a new name only."""
    from openclone.loop.create import append_loop

    path = config
    if path is None:
        settings = read_settings(None)
        path = settings.config_file or Path("openclone.toml")
    values = {
        "name": name, "model": model, "tenant": tenant, "teacher": teacher,
        "student_base": student_base, "judge": judge, "every": every,
        "every_captures": every_captures,
        "budget": {"examples": examples, "train_steps": train_steps,
                   "eval_prompts": eval_prompts, "teacher_usd": teacher_usd,
                   "gpu_hours": gpu_hours},
    }  # fmt: skip
    with exit_on_error(USAGE):
        loop = append_loop(path, values)
    console.print(f"added loop {loop.name} to {path}; `openclone loop run {loop.name}` runs it")


@loop_app.command("history")
def history_command(
    name: NameArg,
    limit: Annotated[int, typer.Option(min=1, help="newest N runs")] = 20,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """The loop's runs, newest first: each step's state, counts, time and cost, the decision."""
    from openclone.loop.state import list_runs
    from openclone.store import open_store

    settings, loop = _loop(config, name)
    with exit_on_error(USAGE):
        store = open_store(settings)
    try:
        runs = list_runs(store, loop.name, limit)
    finally:
        store.close()
    if json_out:
        print(json.dumps({"loop": loop.name, "runs": [r.to_dict() for r in runs]}, indent=2))
        return
    for run in runs:
        _show(run)
    if not runs:
        err.print(f"loop {name!r} has not run yet: `openclone loop run {name}`")


def _switch(name: str, config: Path | None, paused: bool) -> None:
    from openclone.loop.state import set_paused
    from openclone.store import open_store

    settings, loop = _loop(config, name)
    with exit_on_error(USAGE):
        store = open_store(settings)
    try:
        set_paused(store, loop.name, paused)
    finally:
        store.close()


@loop_app.command("pause")
def pause_command(name: NameArg, config: ConfigOpt = None) -> None:
    """Start no new run; a running one stops after its current step."""
    _switch(name, config, True)
    console.print(f"loop {name} paused; `openclone loop resume {name}` to continue")


@loop_app.command("resume")
def resume_command(name: NameArg, config: ConfigOpt = None) -> None:
    """Undo pause: the next `loop run` or scheduler turn continues where it stopped."""
    _switch(name, config, False)
    console.print(f"loop {name} resumed")


@loop_app.command("cancel")
def cancel_command(name: NameArg, config: ConfigOpt = None) -> None:
    """Cancel the loop's unfinished run for good (a live one stops after its current step)."""
    from openclone.loop.state import request_cancel
    from openclone.store import open_store

    settings, loop = _loop(config, name)
    with exit_on_error(USAGE):
        store = open_store(settings)
    try:
        run = request_cancel(store, loop.name)
    finally:
        store.close()
    if run is None:
        err.print(f"loop {name} has no unfinished run")
        return
    console.print(f"cancelled run {run.number} of loop {name}")


@loop_app.command("deprecations")
def deprecations_command(
    refresh: Annotated[
        bool, typer.Option("--refresh", help="read the upstreams' models lists now")
    ] = False,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """The deprecation watch: each closed model's configured shutdown date ([deprecations]),
    what its upstream's models list reports (read once a day by `loop start`), and the
    date in force, the earlier of the two (a model gone from its upstream's list: today)."""
    import time

    from openclone.loop import load_loops
    from openclone.loop.upstream_watch import refresh as refresh_watch
    from openclone.loop.upstream_watch import watch_rows
    from openclone.store import open_store

    settings = read_settings(config)
    with exit_on_error(USAGE):
        loops = load_loops(settings)
        store = open_store(settings)
    try:
        now = time.time()
        if refresh:
            refresh_watch(store, settings, loops, now, force=True)
        rows = watch_rows(store, settings, loops, now)
    finally:
        store.close()
    if json_out:
        print(json.dumps({"models": rows}, indent=2))
        return
    table = Table("model", "configured", "upstream", "checked", "in force", "days left")
    for row in rows:
        up = row["upstream"] or {}
        said = f"{up['state']} {up['shutdown'] or ''}".strip() if up else "-"
        if up.get("error"):
            said += " (last read failed)"
        checked = up.get("checked") or ("never" if row["proxied"] else "not proxied")
        table.add_row(escape(row["model"]), row["configured"] or "-", escape(said), checked,
                      row["effective"] or "-",
                      "-" if row["days_left"] is None else str(row["days_left"]))  # fmt: skip
    console.print(table)
    for row in [] if refresh else rows:  # a read that failed just now was logged already
        error = (row["upstream"] or {}).get("error")
        if error:
            err.print(f"{escape(row['model'])}: {escape(error)}", highlight=False)
    if not rows:
        err.print("no closed model is watched: add [deprecations] or a loop with a proxied teacher")
