"""What a step is given and what it gives back.

A step is a plain function ``(StepContext) -> StepResult``. What it returns is recorded
in the store before the next step starts; ``outputs`` is what later steps read (through
:meth:`StepContext.output`), also when they run in a later process after a crash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openclone.config import Settings
from openclone.loop.config import LoopConfig, LoopError
from openclone.loop.state import RunInfo
from openclone.store.db import Store

__all__ = ["Decision", "Step", "StepContext", "StepResult"]


@dataclass(frozen=True)
class Decision:
    """What a run decided: ``promote``, ``reject`` or ``skip`` (the run ends early)."""

    action: str
    reason: str


@dataclass
class StepResult:
    counts: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    cost_usd: float = 0.0
    decision: Decision | None = None
    candidate: str | None = None  # NAME@VERSION, once the run has one
    # Set: the run waits for people (a review); the step is recorded ``waiting`` and the
    # run ends ``waiting``, and the next ``loop run`` runs this step again.
    waiting: str | None = None


@dataclass
class StepContext:
    config: LoopConfig
    settings: Settings
    store: Store
    run: RunInfo
    run_dir: Path
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # by step name
    say: Callable[[str], None] = lambda message: None  # a line of progress for a person

    def output(self, step: str, key: str) -> Any:
        try:
            return self.outputs[step][key]
        except KeyError:
            raise LoopError(f"step {step!r} recorded no {key!r}; cancel this run") from None


Step = Callable[[StepContext], StepResult]
