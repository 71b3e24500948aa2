"""Self-Instruct, the Alpaca recipe: the teacher writes new tasks from examples, then answers them.

``concurrency`` workers share one loop. Each takes the most useful step: answer a task
from the backlog while rows are still wanted, else ask for more tasks while the backlog
and the task-writing requests in flight cannot cover what is still wanted, else wait for
one of the others to finish something. New tasks pass the filters (and join the
near-duplicate filter) as soon as they are read, so tasks answered at the same time are
never near-duplicates of each other.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Awaitable, Callable

from openclone.distill.config import DistillConfig
from openclone.distill.filters import AnswerFilter, InstructionFilter, Reason
from openclone.distill.output import DistillOutput
from openclone.distill.parse import parse_tasks
from openclone.distill.prompts import answer_messages, task_writing_messages
from openclone.distill.run import DistillResult, ProgressEvent, run_distill, run_workers
from openclone.distill.seeds import SeedSet, load_seeds
from openclone.distill.task import Task
from openclone.distill.teacher import Teacher, TeacherFailed, TeacherRejected
from openclone.routing.client import ChatClient

__all__ = ["SOURCE", "distill_self_instruct"]

SOURCE = "self-instruct"


async def distill_self_instruct(
    config: DistillConfig,
    client: ChatClient,
    *,
    seeds: SeedSet | None = None,
    on_progress: Callable[[ProgressEvent], None] | None = None,
) -> DistillResult:
    """Grow ``config.out`` to ``config.count`` rows of new tasks and the teacher's answers."""
    seed_set = seeds or load_seeds(config.seeds)

    async def body(teacher: Teacher, output: DistillOutput) -> str:
        return await _Loop(config, teacher, output, seed_set).run()

    return await run_distill(
        config, client, SOURCE, {"seeds": seed_set.describe()}, body, on_progress
    )


class _Loop:
    def __init__(
        self, config: DistillConfig, teacher: Teacher, output: DistillOutput, seeds: SeedSet
    ) -> None:
        self.config, self.teacher, self.output = config, teacher, output
        self.seeds = seeds.tasks
        # Tasks of earlier sessions: examples for new ones, and never to be repeated.
        self.generated = [
            Task(m["instruction"], m.get("input", ""))
            for m in output.rows
            if isinstance(m.get("instruction"), str)
        ]
        self.instructions = InstructionFilter(
            config.threshold,
            [t.instruction for t in self.seeds] + [t.instruction for t in self.generated],
        )
        self.answers = AnswerFilter(config.keep_truncated)
        self.rng = random.Random(config.random_seed)
        self.backlog: deque[Task] = deque()
        self.answering = 0
        self.writing = 0
        self.rounds_left = config.round_budget()
        self._changed = asyncio.Event()

    async def run(self) -> str:
        try:
            await run_workers(self.config.concurrency, self._worker)
        finally:
            # Passed the filters but never answered: surplus, or left by an interruption.
            self.output.state.unused += len(self.backlog)
            self.backlog.clear()
        return "complete" if self.output.kept >= self.config.count else "budget exhausted"

    def _wanted(self) -> int:
        return self.config.count - self.output.kept - self.answering

    async def _worker(self) -> None:
        per_round = self.config.tasks_per_request
        while True:
            wanted = self._wanted()
            if wanted <= 0 and not self.answering:
                return
            if wanted > 0 and self.backlog:
                await self._step(self._answer(self.backlog.popleft()), answering=True)
            elif self.rounds_left > 0 and self.writing * per_round < wanted - len(self.backlog):
                self.rounds_left -= 1
                await self._step(self._write_tasks(), answering=False)
            elif not self.answering and not self.writing:
                return  # nothing in flight could change the picture: the budget is spent
            else:
                await self._changed.wait()

    async def _step(self, work: Awaitable[None], *, answering: bool) -> None:
        if answering:
            self.answering += 1
        else:
            self.writing += 1
        try:
            await work
        except BaseException:
            if answering:  # cut off mid-answer (Ctrl-C, a stopped run): passed, never answered
                self.output.state.unused += 1
            raise
        finally:
            if answering:
                self.answering -= 1
            else:
                self.writing -= 1
            # Wake every waiting worker once; the next waiters get a fresh event.
            self._changed.set()
            self._changed = asyncio.Event()

    def _examples(self) -> list[Task]:
        config = self.config
        shown = self.rng.sample(self.seeds, min(config.prompt_seeds, len(self.seeds)))
        pool = self.generated
        shown += self.rng.sample(pool, min(config.prompt_generated, len(pool)))
        return shown

    async def _write_tasks(self) -> None:
        config, output = self.config, self.output
        messages = task_writing_messages(self._examples(), config.tasks_per_request)
        try:
            reply = await self.teacher.ask(
                messages, temperature=config.temperature, max_tokens=config.max_tokens, kind="tasks"
            )
        except (TeacherFailed, TeacherRejected):
            return  # counted by the teacher's account; the round budget bounds the loop
        parsed = parse_tasks(reply.text, reply.truncated)
        output.state.written += len(parsed.tasks) + sum(parsed.dropped.values())
        for why, n in parsed.dropped.items():
            output.drop(why, n)
        for task in parsed.tasks:
            reason = self.instructions.check(task)
            if reason is not None:
                output.drop(reason)
            else:
                self.backlog.append(task)
                self.generated.append(task)

    async def _answer(self, task: Task) -> None:
        config, output = self.config, self.output
        try:
            reply = await self.teacher.ask(
                answer_messages(task.prompt, config.system_prompt),
                temperature=config.answer_temperature,
                max_tokens=config.answer_max_tokens,
                kind="answer",
            )
        except TeacherRejected:
            output.drop(Reason.REJECTED)
            return
        except TeacherFailed:
            output.drop(Reason.FAILED)
            return
        reason = self.answers.check(reply, task.prompt, task.instruction)
        if reason is not None:
            output.drop(reason)
            return
        output.append(task.row(reply.text.strip(), source=SOURCE, teacher=self.teacher.model))
