"""One instruction-following task: the unit Self-Instruct writes, filters and answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from openclone.data.formats import alpaca_prompt

__all__ = ["Task"]


@dataclass(frozen=True)
class Task:
    instruction: str
    input: str = ""
    output: str = ""  # an example answer (seeds); generated tasks get theirs from the teacher

    @property
    def prompt(self) -> str:
        """The user turn a student sees: the instruction, then its input after a blank line."""
        return alpaca_prompt(self.instruction, self.input)

    def row(self, answer: str, **metadata: Any) -> dict[str, Any]:
        """The OpenAI chat row; ``metadata`` keeps instruction and input apart, for Alpaca."""
        return {
            "messages": [
                {"role": "user", "content": self.prompt},
                {"role": "assistant", "content": answer},
            ],
            "metadata": {"instruction": self.instruction, "input": self.input, **metadata},
        }
