"""A stand-in teacher for the distill tests: NOT a model.

It produces on demand what a real model cannot be made to produce: task lists with every
kind of defect the parser and filters must handle (a chatty preamble, a repeated task, a
seed copied verbatim, tasks a text model cannot do, too short, starting with punctuation,
a refusal, an item cut off by max_tokens), answers that are empty, echoed or refusals, and
429s, retryable 5xx errors and a Ctrl-C (SIGINT) at chosen calls. Everything else goes
through the real code: the Teacher's retries, the parser, the filters, the output files.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
from collections.abc import Callable

from openclone.errors import EngineError, RateLimited
from openclone.schema import ChatCompletion, ChatCompletionRequest, Usage

WORDS = random.Random(7)


def unique_instruction(rng: random.Random, marker: str = "") -> str:
    """An instruction sharing no token with any other (random pseudo-words): never a
    near-duplicate, so the only near-duplicates are the ones planted on purpose."""
    words = ["".join(rng.choice("bcdfghjklmnpqrstvwxz") + rng.choice("aeiou") for _ in range(3))]
    words += [
        "".join(rng.choice("bcdfghjklmnpqrstvwxz") + rng.choice("aeiou") for _ in range(3))
        for _ in range(5)
    ]
    return f"Summarise {' '.join(words)} {marker}".strip() + "."


class StandInTeacher:
    """Scripted ChatClient (a stand-in, see the module doc)."""

    def __init__(
        self,
        *,
        seed_instruction: str,
        markers: tuple[str, ...] = ("", "", "", ""),
        fail: dict[int, Exception] | None = None,
        interrupt_after_answers: int | None = None,
        models: list[str] | None = None,
        delay: float = 0.0,
    ) -> None:
        self.seed_instruction = seed_instruction
        self.markers = markers  # one per good task of a round: "", "echo", "blank", "refuse"
        self.fail = fail or {}  # call number (1-based) -> error raised instead of replying
        self.interrupt_after_answers = interrupt_after_answers
        self._models = models if models is not None else ["standin"]
        self.delay = delay
        self.rng = random.Random(1)
        self.calls = 0
        self.raised = 0
        self.answers = 0
        self.task_rounds = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.requests: list[ChatCompletionRequest] = []

    def models(self) -> list[str]:
        return self._models

    async def aclose(self) -> None:
        pass

    async def chat(self, req: ChatCompletionRequest) -> ChatCompletion:
        self.calls += 1
        self.requests.append(req)
        if self.delay:
            await asyncio.sleep(self.delay)
        error = self.fail.get(self.calls)
        if error is not None:
            self.raised += 1
            raise error
        prompt = req.messages[-1].text()
        if "new tasks in exactly the same format" in prompt:
            text, finish = self._task_list(), "length"
        else:
            if (
                self.interrupt_after_answers is not None
                and self.answers >= self.interrupt_after_answers
            ):
                # Ctrl-C, delivered as the terminal would: asyncio.run cancels the run and
                # raises KeyboardInterrupt once it has unwound. This request never answers.
                signal.raise_signal(signal.SIGINT)
                await asyncio.sleep(60)
            self.answers += 1
            text, finish = self._answer(prompt), "stop"
        usage = Usage.of(len(prompt.split()), len(text.split()))
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        return ChatCompletion.model_validate(
            {
                "model": req.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": finish,
                    }
                ],
                "usage": usage.model_dump(),
            }
        )

    def _task_list(self) -> str:
        self.task_rounds += 1
        good = [unique_instruction(self.rng, m) for m in self.markers]
        lines = ["Sure! Here are some new tasks:", ""]
        number = itertools.count(5)
        for i, instruction in enumerate(good):
            lines += [f"Task {next(number)}", f"Instruction: {instruction}"]
            lines += [f"Input: some material {i}" if i % 2 else "Input: <noinput>", ""]
        lines += [
            f"Task {next(number)}: Draw a picture of a {good[0].split()[1]} at sunset.",  # not text
            f"Task {next(number)}: {self.seed_instruction}",  # a seed, verbatim
            f"Task {next(number)}: {good[0]}",  # a repeat within the reply
            f"Task {next(number)}: Hi there.",  # too short
            f"Task {next(number)}: (Optional) describe your {good[1].split()[2]} weekend plans.",
            f"Task {next(number)}: I'm sorry, but I can't help with writing more tasks.",
            f"Task {next(number)}: Compare the two approaches and expl",  # cut by max_tokens
        ]
        return "\n".join(lines)

    def _answer(self, prompt: str) -> str:
        instruction = prompt.split("\n\n")[0]
        if " echo." in instruction:
            return instruction
        if " blank." in instruction:
            return "   "
        if " refuse." in instruction:
            return "As an AI language model, I cannot help with that request."
        return f"A careful answer about {instruction.split()[1]}, in several useful sentences."


def instant(_: float) -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


def errors(*pairs: tuple[int, Callable[[], Exception]]) -> dict[int, Exception]:
    return {n: make() for n, make in pairs}


def rate_limited() -> Exception:
    return RateLimited("slow down")


def server_error() -> Exception:
    return EngineError("upstream 503", retryable=True, status_code=503)
