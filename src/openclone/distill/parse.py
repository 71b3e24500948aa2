"""Tasks out of a teacher's task-writing reply, however it chose to format them.

Teachers answer "write 8 new tasks" in many shapes: ``Task 3:`` headers, numbered lists
(``1.``, ``2)``, Alpaca's ``1. Instruction:`` / ``1. Input:``), blocks of ``Instruction:``
and ``Input:`` fields, markdown bullets, one task per line; with a chatty preamble, a
sign-off, or a refusal instead. The reply is split into items by the most structured
style it uses, so a numbered list inside one task's input does not split that task.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from openclone.distill.filters import Reason, is_refusal
from openclone.distill.task import Task

__all__ = ["Parsed", "parse_tasks"]

_HEADER = re.compile(
    r"^[\s#*_>]*(?:task|instruction|example|prompt)\s*(?:#|no\.?)?\s*(\d{1,4})"
    r"\s*(?:[:.)\]\-\u2013\u2014]|\*\*|$)[\s*_]*(.*)$",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"^\s{0,3}[*_]{0,2}\(?(\d{1,3})\s*(?:[.)]|:(?=\s))[*_]{0,2}(?:\s+(.*))?$")
_BULLET = re.compile(r"^\s{0,3}[-*\u2022+]\s+(.*)$")
_SEPARATOR = re.compile(r"^\s*(?:#{3,}|-{3,}|\*{3,}|={3,}|_{3,})\s*$")
_LABEL = re.compile(
    r"^[\s#*_>]*(?:\d{1,3}\s*[.)]\s*)?(instructions?|task|input|context|output|answer|response)"
    r"\s*[*_]*\s*[:\uff1a]\s*[*_]*\s*(.*)$",
    re.IGNORECASE,
)
_FIELD = {
    "instruction": "instruction",
    "instructions": "instruction",
    "task": "instruction",
    "input": "input",
    "context": "input",
    "output": "output",
    "answer": "output",
    "response": "output",
}
_NO_INPUT = {"", "noinput", "no input", "none", "n/a", "na", "null", "nil", "empty", "-", "blank"}
_SIGN_OFF = re.compile(
    r"^\W*(?:i hope|hope th|let me know|feel free|these (?:tasks|instructions|examples)"
    r"|enjoy|good luck|note:|happy)",
    re.IGNORECASE,
)


@dataclass
class Parsed:
    tasks: list[Task] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)


def parse_tasks(text: str, truncated: bool = False) -> Parsed:
    """The tasks in ``text``; ``truncated`` (the reply hit max_tokens) drops the last item."""
    parsed = Parsed()
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    items, structured = _split(lines)
    if not structured and is_refusal(text.strip()):
        parsed.dropped[Reason.REFUSAL] += 1  # one refusal, however many lines it runs to
        return parsed
    if items:
        items[-1] = _without_sign_off(items[-1])
    if truncated and items:
        items.pop()
        parsed.dropped[Reason.TRUNCATED] += 1
    for item in items:
        task = _task(item)
        if task is None:
            parsed.dropped[Reason.UNPARSABLE] += 1
        else:
            parsed.tasks.append(task)
    if not items and not parsed.dropped:
        parsed.dropped[Reason.UNPARSABLE] += 1
    return parsed


def _split(lines: list[str]) -> tuple[list[list[str]], bool]:
    """Items as lists of lines, and whether the reply had any structure beyond lines."""
    if any(_HEADER.match(line) for line in lines):
        return _split_by(lines, _header_start), True
    if any(_NUMBER.match(line) for line in lines):
        return _split_by(lines, _number_start), True
    if any(_instruction_label(line) for line in lines):
        return _split_by(lines, _label_start), True
    if any(_BULLET.match(line) for line in lines):
        return _split_by(lines, _bullet_start), True
    if any(_SEPARATOR.match(line) for line in lines):
        return _split_by(lines, None), True
    return _split_by(lines, _line_start), False


# A start rule gets a line and the current item's number; it returns None for a line that
# continues the current item, else (the new item's number, the line without its marker).
StartRule = Callable[[str, int], "tuple[int, str] | None"]


def _split_by(lines: list[str], start: StartRule | None) -> list[list[str]]:
    """Items begun by ``start``, or with ``start`` None the blocks between separator lines.

    Lines before the first item are a preamble ("Sure! Here are 8 tasks:") and ignored.
    """
    items: list[list[str]] = []
    current: list[str] | None = None
    if start is None:
        current = []
        items.append(current)
    number = 0
    for line in lines:
        if _SEPARATOR.match(line):
            current = None
            if start is None:
                current = []
                items.append(current)
            continue
        began = start(line, number) if start is not None else None
        if began is not None:
            number, rest = began
            current = [rest]
            items.append(current)
        elif current is not None:
            current.append(line)
    return [item for item in (_trimmed(i) for i in items) if item]


def _header_start(line: str, number: int) -> tuple[int, str] | None:
    m = _HEADER.match(line)
    return (int(m.group(1)), m.group(2)) if m and int(m.group(1)) != number else None


def _number_start(line: str, number: int) -> tuple[int, str] | None:
    m = _NUMBER.match(line)
    if m is None:
        return None
    n, rest = int(m.group(1)), m.group(2) or ""
    if n > number:
        return n, rest
    return None


def _instruction_label(line: str) -> bool:
    m = _LABEL.match(line)
    return m is not None and _FIELD[m.group(1).lower()] == "instruction"


def _label_start(line: str, number: int) -> tuple[int, str] | None:
    return (number + 1, line) if _instruction_label(line) else None


def _bullet_start(line: str, number: int) -> tuple[int, str] | None:
    m = _BULLET.match(line)
    return (number + 1, m.group(1)) if m else None


def _line_start(line: str, number: int) -> tuple[int, str] | None:
    m = _LABEL.match(line)
    if not line.strip() or (m and _FIELD[m.group(1).lower()] != "instruction"):
        return None  # an "Input:" line belongs to the task above it
    if number == 0 and line.rstrip().endswith(":"):
        return None  # "Here are some new tasks:"
    return number + 1, line


def _trimmed(lines: list[str]) -> list[str]:
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    while lines and not lines[0].strip():
        lines = lines[1:]
    return lines


def _without_sign_off(lines: list[str]) -> list[str]:
    # The last item of a list often ends with the teacher's closing remark.
    while True:
        blanks = [i for i, line in enumerate(lines) if not line.strip()]
        if not blanks or not _SIGN_OFF.match("\n".join(lines[blanks[-1] + 1 :]).strip()):
            return lines
        lines = _trimmed(lines[: blanks[-1]])


def _task(lines: list[str]) -> Task | None:
    fields: dict[str, list[str]] = {"instruction": [], "input": [], "output": []}
    current, labelled = "instruction", False
    for line in lines:
        m = _LABEL.match(line)
        if m:
            current, labelled = _FIELD[m.group(1).lower()], True
            line = m.group(2)
        fields[current].append(line)
    instruction = "\n".join(_trimmed(fields["instruction"]))
    input_text = "\n".join(_trimmed(fields["input"]))
    if not labelled and "\n\n" in instruction:
        # No labels: the first paragraph asks, the rest is what it is about.
        instruction, input_text = instruction.split("\n\n", 1)
    instruction = " ".join(_clean(instruction).split())
    if not instruction:
        return None
    input_text = _clean(input_text)
    if input_text.strip("<>()[]*_ .").lower() in _NO_INPUT:
        input_text = ""
    return Task(instruction, input_text, _clean("\n".join(_trimmed(fields["output"]))))


def _clean(text: str) -> str:
    text = text.strip()
    for mark in ("**", "__"):
        if text.startswith(mark) and text.endswith(mark) and len(text) > 2 * len(mark):
            text = text[len(mark) : -len(mark)].strip()
        elif text.count(mark) % 2 and text.endswith(mark):  # its opening half went with a header
            text = text[: -len(mark)].strip()
    pairs = {'"': '"', "'": "'", "`": "`", "\u201c": "\u201d", "\u00ab": "\u00bb"}
    if len(text) > 1 and pairs.get(text[0]) == text[-1]:
        text = text[1:-1].strip()
    return text
