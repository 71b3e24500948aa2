"""What every distill run shares: open or continue the output, run the loop, write the card."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openclone.distill.card import write_card
from openclone.distill.config import DistillConfig, DistillError
from openclone.distill.output import DistillOutput
from openclone.distill.teacher import Account, Teacher
from openclone.routing.client import ChatClient

__all__ = ["DistillResult", "ProgressEvent", "run_distill", "run_workers"]

log = logging.getLogger("openclone.distill")


@dataclass(frozen=True)
class ProgressEvent:
    kept: int
    count: int
    dropped: int
    requests: int
    cost_usd: float

    @property
    def done(self) -> int:
        """Rows toward the count (a resumed run may already hold more)."""
        return min(self.kept, self.count)

    def summary(self) -> str:
        return f"dropped {self.dropped} · requests {self.requests} · ${self.cost_usd:.4f}"


@dataclass
class DistillResult:
    out: Path
    status: str  # complete | budget exhausted | prompts exhausted | interrupted | stopped: why
    kept: int  # rows in the dataset, earlier sessions' included
    new: int  # rows this session added
    dropped: dict[str, int]
    account: Account
    wall_seconds: float
    card_json: Path
    card_md: Path


# A loop body fills the output through the teacher and returns the run's status.
Body = Callable[[Teacher, DistillOutput], Awaitable[str]]


async def run_distill(
    config: DistillConfig,
    client: ChatClient,
    mode: str,
    source: dict[str, Any],
    body: Body,
    on_progress: Callable[[ProgressEvent], None] | None = None,
    *,
    register: Callable[[Path], None] | None = None,
) -> DistillResult:
    """Run ``body`` on ``config.out``; the card is written however the session ends.

    ``register`` records the dataset where an erasure will look for it (rows made from
    captures), after every session, interrupted ones too: their rows hold captured text.
    """
    teacher = Teacher(
        client,
        config.teacher,
        concurrency=config.concurrency,
        requests_per_minute=config.requests_per_minute,
        retry=config.retry,
        price=config.price,
        rng=random.Random(config.random_seed),
    )
    teacher.check_model()  # before the output exists: a typo must not start a run
    output = DistillOutput.open(config.out, mode, config.teacher, source)
    teacher.account = output.state.account  # the bill goes on across sessions
    status = "interrupted"  # KeyboardInterrupt or cancellation: resumable as is
    ended = False
    try:
        if on_progress is not None:
            output.on_change = lambda: on_progress(_event(config, output))
            on_progress(_event(config, output))
        status = "complete" if output.kept >= config.count else await body(teacher, output)
        ended = True
    except Exception as exc:
        status = f"stopped: {exc}"
        raise
    finally:
        output.close(status)
        if register is not None:
            _register(register, output.path, quiet=not ended)
        card_json, card_md = write_card(config, output)
    return DistillResult(
        out=output.path,
        status=status,
        kept=output.kept,
        new=output.kept - output.resumed,
        dropped=dict(output.state.dropped),
        account=output.state.account,
        wall_seconds=output.state.wall_seconds,
        card_json=card_json,
        card_md=card_md,
    )


def _register(register: Callable[[Path], None], path: Path, *, quiet: bool) -> None:
    """Register the dataset; ``quiet`` when the session is already ending in an error (or
    Ctrl-C), which must stay the one reported: this failure is then logged instead."""
    try:
        register(path)
    except DistillError:
        if not quiet:
            raise
        log.exception("could not register %s in the store; the next run of it will", path)


def _event(config: DistillConfig, output: DistillOutput) -> ProgressEvent:
    account = output.state.account
    return ProgressEvent(
        kept=output.kept,
        count=config.count,
        dropped=sum(output.state.dropped.values()),
        requests=sum(account.requests.values()),
        cost_usd=account.cost_usd,
    )


async def run_workers(n: int, worker: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """``n`` copies of ``worker`` at once; the first error stops them all and is raised."""
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(n):
                group.create_task(worker())
    except BaseExceptionGroup as errors:
        raise errors.exceptions[0] from None
