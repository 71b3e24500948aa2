"""``openclone jobs``: the background jobs that ``--detach`` starts (train, distill, eval)."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table

from openclone.cli.common import FAILED, console, exit_on_error

__all__ = ["jobs_app"]

jobs_app = typer.Typer(help="Background jobs: list, logs, cancel, resume.", no_args_is_help=True)


@jobs_app.command("list")
def jobs_list() -> None:
    """Jobs, newest first."""
    from openclone.jobs import list_jobs

    table = Table("id", "state", "progress", "message", "age")
    for job in list_jobs():
        progress = f"{job.step}/{job.total}" if job.total else ""
        age = f"{(time.time() - job.created) / 60:.0f} min"
        table.add_row(job.id, job.state, progress, job.error or job.message, age)
    console.print(table)


@jobs_app.command("logs")
def jobs_logs(
    job_id: Annotated[str, typer.Argument(help="job id")],
    tail: Annotated[int | None, typer.Option(help="last N lines only")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep printing until done")
    ] = False,
) -> None:
    """Print a job's log."""
    from openclone.jobs import get_job, job_logs

    with exit_on_error(FAILED):
        text = job_logs(job_id, tail)
        console.print(text, end="", markup=False, highlight=False)
        seen = len(job_logs(job_id))
        while follow and not get_job(job_id).done:
            time.sleep(1)
            now = job_logs(job_id)
            console.print(now[seen:], end="", markup=False, highlight=False)
            seen = len(now)


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: Annotated[str, typer.Argument(help="job id")],
    grace: Annotated[float, typer.Option(help="seconds before SIGKILL")] = 30.0,
) -> None:
    """Stop a job: it checkpoints and exits (killed after --grace seconds)."""
    from openclone.jobs import cancel_job

    with exit_on_error(FAILED):
        status = cancel_job(job_id, grace)
    console.print(f"{job_id}: {status.state}")


@jobs_app.command("resume")
def jobs_resume(job_id: Annotated[str, typer.Argument(help="job id")]) -> None:
    """Restart a failed or cancelled job from its last checkpoint."""
    from openclone.jobs import resume_job

    with exit_on_error(FAILED):
        status = resume_job(job_id)
    console.print(f"{job_id}: resumed (attempt {status.attempt})")
