"""What the teacher is asked: to write new tasks from examples, and to answer one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openclone.distill.task import Task

__all__ = ["answer_messages", "task_writing_messages"]

NO_INPUT = "<noinput>"

_WRITE_TASKS = """\
We are building a training set for an AI assistant that people use at work and at home. \
Invent new tasks that someone could ask such an assistant to do.

Rules for every task:
- A text-only assistant must be able to complete it in its reply: nothing that needs \
images, files, audio, video, browsing the web or acting in the world.
- Vary the kind of task (writing, rewriting, extraction, classification, reasoning, maths, \
coding, data and SQL, planning, summarising, e-mail, explanation, advice, brainstorming) \
and the subject, and vary the phrasing: questions and commands, short and detailed.
- The instruction is one or two sentences in English, at least three words long.
- If the task works on some material (a text to summarise, a table, code, a list), write \
that material, realistic and specific, in the Input field; otherwise write {no_input}.
- Do not repeat or reword the examples.

Examples:

{examples}

Write {n} new tasks in exactly the same format, numbered Task {first} to Task {last}. \
Write only the tasks."""


def _format(number: int, task: Task) -> str:
    return f"Task {number}\nInstruction: {task.instruction}\nInput: {task.input or NO_INPUT}"


def task_writing_messages(examples: Sequence[Task], n: int) -> list[dict[str, Any]]:
    """The request for ``n`` new tasks, in the format :func:`~.parse.parse_tasks` reads best."""
    shown = "\n\n".join(_format(i, task) for i, task in enumerate(examples, 1))
    first = len(examples) + 1
    text = _WRITE_TASKS.format(
        no_input=NO_INPUT, examples=shown, n=n, first=first, last=first + n - 1
    )
    return [{"role": "user", "content": text}]


def answer_messages(
    prompt: Sequence[dict[str, Any]] | str, system: str | None = None
) -> list[dict[str, Any]]:
    """The request for an answer: the prompt as the student will see it, after ``system``."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if system and not (messages and messages[0].get("role") in ("system", "developer")):
        messages = [{"role": "system", "content": system}, *messages]
    return messages
