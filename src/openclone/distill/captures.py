"""Distillation of real prompts: the teacher re-answers the company's own traffic.

The prompts are any iterable of OpenAI message lists: a chat JSONL file
(:func:`read_prompts`), or the store's consented captures (:func:`captured_prompts`). A
final assistant message is the answer being replaced and is dropped; earlier assistant
turns stay as context, marked ``"weight": 0`` so a student learns only the teacher's
answer. Each prompt is known by a hash of its messages, which is how a re-run skips the
prompts already answered or dropped.

A row answered from a capture carries the capture's id (``metadata.capture_id``), and the
dataset is registered in the store at the end of every session
(:func:`openclone.store.derived.register_dataset`), so erasing the person who asked removes
the row and ``openclone audit erasures`` lists the file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openclone.config import Settings
from openclone.data.formats import DatasetFormatError, iter_dataset_rows, to_chat
from openclone.distill.config import DistillConfig, DistillError
from openclone.distill.filters import AnswerFilter, Reason
from openclone.distill.output import DistillOutput
from openclone.distill.prompts import answer_messages
from openclone.distill.run import DistillResult, ProgressEvent, run_distill, run_workers
from openclone.distill.teacher import Teacher, TeacherFailed, TeacherRejected
from openclone.errors import OpenCloneError
from openclone.routing.client import ChatClient

__all__ = [
    "CapturedPrompt",
    "CapturedPrompts",
    "captured_prompts",
    "distill_prompts",
    "prompt_id",
    "prompt_of",
    "read_prompts",
]

Messages = list[dict[str, Any]]


def prompt_of(messages: Iterable[Mapping[str, Any]]) -> Messages:
    """The conversation without its final assistant message."""
    prompt = [dict(m) for m in messages]
    if prompt and prompt[-1].get("role") == "assistant":
        prompt.pop()
    return prompt


def prompt_id(prompt: Messages) -> str:
    text = json.dumps(prompt, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _user_text(message: Mapping[str, Any]) -> str | None:
    """The text of a message; None when it has parts a text-only teacher cannot read."""
    content = message.get("content")
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        return None
    if any(not isinstance(p, dict) or p.get("type") != "text" for p in content):
        return None
    return "\n".join(str(p.get("text") or "") for p in content)


def read_prompts(path: Path) -> list[Messages | CapturedPrompt]:
    """The conversations of a chat JSONL file (ShareGPT and Alpaca rows read too); a row
    with ``metadata.capture_id`` (a loop's prompts) keeps it, so its answer carries it.

    The whole file is read up front, so a bad line stops the run before it starts.
    """
    path = Path(path)
    if not path.is_file():
        raise DistillError(f"prompts file not found: {path}")
    conversations: list[Messages | CapturedPrompt] = []
    try:
        for where, row in iter_dataset_rows(path):
            try:
                chat = to_chat(row)
                meta = chat.get("metadata")
                capture_id = meta.get("capture_id") if isinstance(meta, dict) else None
                conversations.append(
                    CapturedPrompt(capture_id, chat["messages"])
                    if isinstance(capture_id, str)
                    else chat["messages"]
                )
            except ValueError as exc:
                raise DistillError(f"{where}: {exc}") from exc
    except DatasetFormatError as exc:
        raise DistillError(str(exc)) from exc
    return conversations


@dataclass(frozen=True)
class CapturedPrompt:
    """A captured conversation and the capture it came from; iterates as its messages, so
    it goes wherever a message list does."""

    capture_id: str
    messages: Messages

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.messages)


class CapturedPrompts(Iterator[CapturedPrompt]):
    """The captured prompts of one run, and the store to register its dataset in."""

    def __init__(
        self, settings: Settings, prompts: Iterator[CapturedPrompt], source: dict[str, Any]
    ) -> None:
        self.settings, self._prompts, self.source = settings, prompts, source

    def __next__(self) -> CapturedPrompt:
        return next(self._prompts)

    def close(self) -> None:
        close = getattr(self._prompts, "close", None)
        if callable(close):  # a generator over the store: let it close its session
            close()

    def register(self, out: Path) -> None:
        """Record ``out`` and the captures its rows came from, so an erasure reaches it."""
        from sqlalchemy.exc import SQLAlchemyError

        from openclone.store import open_store
        from openclone.store.derived import register_dataset

        try:
            store = open_store(self.settings)
            try:
                register_dataset(store, out, actor="distill", source={"captures": self.source})
            finally:
                store.close()
        except (OpenCloneError, SQLAlchemyError, OSError) as exc:
            # Not registered, an erasure would miss these rows: the run must not pass.
            raise DistillError(f"cannot register {out} in the store: {exc}") from exc


def captured_prompts(
    settings: Settings, filters: Mapping[str, Any] | None = None
) -> CapturedPrompts:
    """The store's consented captured prompts, through ``CaptureFilter(**filters)``.

    The store is opened here, so a missing store or a bad filter fails before the run.
    """
    try:
        from openclone.store import open_store
        from openclone.store.export import CaptureFilter, iter_captured_prompt_ids
    except ImportError as exc:
        raise DistillError(
            "--from-captures needs the capture store (openclone.store.export."
            f"iter_captured_prompt_ids), which this installation does not have: {exc}"
        ) from exc
    try:
        capture_filter = CaptureFilter(**dict(filters or {}))
    except TypeError as exc:
        raise DistillError(f"bad capture filter: {exc}") from exc
    store = open_store(settings)

    def drain() -> Generator[CapturedPrompt, None, None]:
        try:
            for capture_id, messages in iter_captured_prompt_ids(store, capture_filter):
                yield CapturedPrompt(capture_id, messages)
        finally:
            store.close()

    captures = drain()
    try:  # the first read runs the query: an unknown tenant is an error before the run
        first = next(captures, None)
    except OpenCloneError as exc:
        raise DistillError(f"cannot read the captures: {exc}") from exc

    def all_of_them() -> Iterator[CapturedPrompt]:
        try:
            if first is not None:
                yield first
                yield from captures
        finally:
            captures.close()

    shown = {k: v for k, v in (filters or {}).items() if v}
    return CapturedPrompts(settings, all_of_them(), shown)


async def distill_prompts(
    config: DistillConfig,
    client: ChatClient,
    prompts: Iterable[Iterable[Mapping[str, Any]]],
    *,
    source: Mapping[str, Any] | None = None,
    on_progress: Callable[[ProgressEvent], None] | None = None,
) -> DistillResult:
    """Answer ``prompts`` with the teacher into ``config.out``, up to ``config.count`` rows."""

    register = prompts.register if isinstance(prompts, CapturedPrompts) else None

    async def body(teacher: Teacher, output: DistillOutput) -> str:
        source_iter = iter(prompts)
        try:
            return await _Loop(config, teacher, output, source_iter).run()
        finally:
            close = getattr(source_iter, "close", None)
            if callable(close):  # a generator over the store: let it close its session
                close()

    return await run_distill(
        config, client, "prompts", dict(source or {"prompts": "iterable"}), body, on_progress,
        register=register,
    )  # fmt: skip


class _Loop:
    def __init__(
        self,
        config: DistillConfig,
        teacher: Teacher,
        output: DistillOutput,
        prompts: Iterator[Iterable[Mapping[str, Any]]],
    ) -> None:
        self.config, self.teacher, self.output, self.prompts = config, teacher, output, prompts
        # Decided in an earlier session: answered (in the rows) or dropped for good.
        self.done = {m.get("prompt_id") for m in output.rows} | set(output.state.decided)
        self.seen: set[str] = set()
        self.answers = AnswerFilter(config.keep_truncated)
        self.answering = 0

    async def run(self) -> str:
        await run_workers(self.config.concurrency, self._worker)
        return "complete" if self.output.kept >= self.config.count else "prompts exhausted"

    async def _worker(self) -> None:
        while self.output.kept + self.answering < self.config.count:
            # A plain next(): store reads are short, and only one worker runs at a time.
            messages = next(self.prompts, None)
            if messages is None:
                return
            capture_id = messages.capture_id if isinstance(messages, CapturedPrompt) else None
            prompt = prompt_of(messages)
            pid = prompt_id(prompt)
            if pid in self.done:
                continue
            if pid in self.seen:
                self.output.drop(Reason.DUPLICATE_PROMPT)
                continue
            self.seen.add(pid)
            self.answering += 1
            try:
                reason = await self._answer(prompt, pid, capture_id)
            finally:
                self.answering -= 1
            if reason is not None:
                if reason is not Reason.FAILED:  # a failure is tried again by a re-run
                    self.output.state.decided.append(pid)
                self.output.drop(reason)

    async def _answer(self, prompt: Messages, pid: str, capture_id: str | None) -> Reason | None:
        users = [m for m in prompt if m.get("role") == "user"]
        texts = [_user_text(m) for m in prompt if m.get("role") in ("user", "system")]
        if any(t is None for t in texts):
            return Reason.NOT_TEXT
        question = _user_text(users[-1]) if users else ""
        if not question or not question.strip():
            return Reason.EMPTY_PROMPT
        try:
            reply = await self.teacher.ask(
                answer_messages(prompt, self.config.system_prompt),
                temperature=self.config.answer_temperature,
                max_tokens=self.config.answer_max_tokens,
                kind="answer",
            )
        except TeacherRejected:
            return Reason.REJECTED
        except TeacherFailed:
            return Reason.FAILED
        reason = self.answers.check(reply, question)
        if reason is not None:
            return reason
        context = [{**m, "weight": 0} if m.get("role") == "assistant" else m for m in prompt]
        metadata = {"source": "prompts", "prompt_id": pid, "teacher": self.teacher.model}
        if capture_id is not None:  # the lineage an erasure follows to this row
            metadata["capture_id"] = capture_id
        row = {
            "messages": [*context, {"role": "assistant", "content": reply.text.strip()}],
            "metadata": metadata,
        }
        self.output.append(row)
        return None
