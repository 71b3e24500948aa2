"""Why a task or answer is dropped: Self-Instruct's filters, each with a countable reason."""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from enum import StrEnum

from openclone.data.dedupe import NearDuplicateFilter
from openclone.distill.task import Task
from openclone.distill.teacher import Reply

__all__ = ["REFUSAL", "AnswerFilter", "InstructionFilter", "Reason", "is_refusal"]


class Reason(StrEnum):
    """The reasons counted in a run's card, in the order they are checked."""

    # the task-writing reply
    UNPARSABLE = "unparsable"  # no task could be read out of the reply
    TRUNCATED = "truncated"  # the last item, cut off by max_tokens
    # the instruction
    REFUSAL = "refusal"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    BAD_START = "bad_start"  # punctuation or non-ASCII first character
    NOT_TEXT = "not_text_task"  # needs an image, a file, a drawing… a text model cannot give
    NEAR_DUPLICATE = "near_duplicate"
    # the prompt (distillation of given prompts)
    EMPTY_PROMPT = "empty_prompt"
    DUPLICATE_PROMPT = "duplicate_prompt"
    # the answer
    REJECTED = "rejected_by_teacher"  # a 400 such as context_length_exceeded
    FAILED = "teacher_failed"  # no answer after every retry
    EMPTY_ANSWER = "empty_answer"
    ECHOED_ANSWER = "echoed_answer"
    REFUSED_ANSWER = "refused_answer"
    ANSWER_TRUNCATED = "answer_truncated"


MIN_WORDS = 3
MAX_WORDS = 150

# Self-Instruct's list of what a text-only model cannot do, matched as whole words; the
# plurals are listed because "images" is not the whole word "image".
_NOT_TEXT_WORDS = (
    "image images graph graphs picture pictures file files map maps draw plot go to video "
    "videos audio music flowchart diagram diagrams"
)
_NOT_TEXT = re.compile(
    r"\b(?:" + "|".join(["go to", *_NOT_TEXT_WORDS.replace("go to ", "").split()]) + r")\b",
    re.IGNORECASE,
)
_APOSTROPHE = "['\u2019]"
REFUSAL = re.compile(
    rf"^\W*(?:i{_APOSTROPHE}?m sorry|i am sorry|sorry,|my apologies|i apologi[sz]e"
    rf"|as an ai\b|as a language model|as an artificial intelligence"
    rf"|i (?:cannot|can{_APOSTROPHE}?t|can not|am unable to|{_APOSTROPHE}?m unable to|won{_APOSTROPHE}?t be able to)"
    rf" (?:help|assist|provide|comply|create|generate|write|do|fulfil|complete)\b"
    rf"|unfortunately,? i (?:cannot|can{_APOSTROPHE}?t|am unable))",
    re.IGNORECASE,
)


def is_refusal(text: str) -> bool:
    return REFUSAL.match(text) is not None


class InstructionFilter:
    """Alpaca's checks on a new instruction, then its near-duplicate filter.

    ``check`` returns the reason to drop, or None after adding the instruction to the
    near-duplicate filter: a task in flight already blocks its near-duplicates.
    """

    def __init__(self, threshold: float = 0.7, known: Iterable[str] = ()) -> None:
        self.dedupe = NearDuplicateFilter(threshold)
        # Seeds and earlier runs' tasks are compared against, never counted as dropped; a
        # seed that near-duplicates another seed adds nothing the other does not cover.
        for text in known:
            self.dedupe.add(text)

    def check(self, task: Task) -> Reason | None:
        instruction = task.instruction
        if is_refusal(instruction):
            return Reason.REFUSAL
        words = len(instruction.split())
        if words < MIN_WORDS:
            return Reason.TOO_SHORT
        if words > MAX_WORDS:
            return Reason.TOO_LONG
        first = instruction[0]
        if first in string.punctuation or not first.isascii():
            return Reason.BAD_START
        if _NOT_TEXT.search(instruction):
            return Reason.NOT_TEXT
        if not self.dedupe.add(instruction):
            return Reason.NEAR_DUPLICATE
        return None


def _normal(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


class AnswerFilter:
    """An answer worth learning from: not empty, not the prompt echoed, not a refusal."""

    def __init__(self, keep_truncated: bool = False) -> None:
        self.keep_truncated = keep_truncated

    def check(self, reply: Reply, prompt: str, instruction: str = "") -> Reason | None:
        """Why ``reply`` to ``prompt`` (the user turn; ``instruction`` its task part) is unfit."""
        answer = reply.text
        if reply.refusal:
            return Reason.REFUSED_ANSWER
        if not answer.strip():
            return Reason.EMPTY_ANSWER
        said, asked = _normal(answer), _normal(prompt)
        heard = _normal(instruction) if instruction else asked
        if said in (asked, heard):
            return Reason.ECHOED_ANSWER
        # Restating the question and adding a word or two is an echo too ("Write a haiku
        # about rain. Sure."), while a rewrite task's answer may legitimately resemble the input.
        for head in (asked, heard):
            if head and said.startswith(head) and len(said[len(head) :].split()) < MIN_WORDS:
                return Reason.ECHOED_ANSWER
        if is_refusal(answer):
            return Reason.REFUSED_ANSWER
        if reply.truncated and not self.keep_truncated:
            return Reason.ANSWER_TRUNCATED
        return None
