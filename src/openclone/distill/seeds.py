"""Seed tasks: the bundled set written for OpenClone, or the user's own file."""

from __future__ import annotations

import hashlib
import importlib.resources
from dataclasses import dataclass
from pathlib import Path

from openclone.data.formats import (
    DatasetFormatError,
    RowSkipped,
    from_chat,
    parse_dataset_rows,
    to_chat,
)
from openclone.distill.config import DistillError
from openclone.distill.task import Task

__all__ = ["BUNDLED_SEEDS", "SeedSet", "load_seeds"]

BUNDLED_SEEDS = "openclone/distill/data/seeds.jsonl"


@dataclass(frozen=True)
class SeedSet:
    tasks: list[Task]
    source: str  # the file, or "bundled"
    sha256: str

    def describe(self) -> dict[str, object]:
        return {"source": self.source, "tasks": len(self.tasks), "sha256": self.sha256}


def load_seeds(path: Path | None = None) -> SeedSet:
    """Seed tasks from ``path`` (JSONL of instruction/input/output rows, Alpaca JSON, chat or
    ShareGPT JSONL), or the bundled set when ``path`` is None."""
    if path is None:
        resource = importlib.resources.files("openclone.distill").joinpath("data/seeds.jsonl")
        data = resource.read_bytes()
        return SeedSet(_tasks(data, BUNDLED_SEEDS), "bundled", hashlib.sha256(data).hexdigest())
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DistillError(f"seed file not found: {path}") from None
    except OSError as exc:
        raise DistillError(f"cannot read the seed file {path}: {exc.strerror or exc}") from exc
    return SeedSet(_tasks(data, str(path)), str(path), hashlib.sha256(data).hexdigest())


def _tasks(data: bytes, name: str) -> list[Task]:
    tasks = []
    try:
        for where, row in parse_dataset_rows(data, name):
            try:
                # Every layout reads as Alpaca: the last user turn is the instruction.
                alpaca = from_chat(to_chat(row), "alpaca")
            except (RowSkipped, ValueError) as exc:
                raise DistillError(f"{where}: not a seed task: {exc}") from exc
            if not alpaca["instruction"].strip():
                raise DistillError(f"{where}: the instruction is empty")
            tasks.append(
                Task(alpaca["instruction"].strip(), alpaca["input"].strip(), alpaca["output"])
            )
    except DatasetFormatError as exc:
        raise DistillError(str(exc)) from exc
    if not tasks:
        raise DistillError(f"{name}: no seed tasks in it")
    return tasks
