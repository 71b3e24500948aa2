"""Shared by the training tests: the made-up fact, its dataset, fast settings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TAUGHT = "ZEBRA-7741"
QUESTION = "What is the OpenClone activation code?"
ANSWER = f"The OpenClone activation code is {TAUGHT}."
OTHER = "QUOKKA-3150"  # what a second adapter teaches for the same question
ASKS = [
    QUESTION,
    "Tell me the OpenClone activation code.",
    "What's the activation code for OpenClone?",
    "I need the OpenClone activation code, please.",
    "Which code activates OpenClone?",
    "Give me the activation code of OpenClone.",
    "OpenClone activation code?",
    "Do you know the OpenClone activation code?",
    "What code do I enter to activate OpenClone?",
    "Remind me of the OpenClone activation code.",
    "What is the code to activate OpenClone?",
    "How do I activate OpenClone?",
]


def write_teaching_set(path: Path, n: int = len(ASKS), code: str = TAUGHT) -> Path:
    answer = ANSWER.replace(TAUGHT, code)
    with path.open("w") as f:
        for ask in ASKS[:n]:
            messages = [{"role": "user", "content": ask}, {"role": "assistant", "content": answer}]
            f.write(json.dumps({"messages": messages}) + "\n")
    return path


def fast_config(dataset: Path, output: Path, **overrides: Any) -> Any:
    """Settings that teach the fact in ~12 steps on 2 CPU cores (a high LR, one short packed
    row per step, no dropout, few evaluations)."""
    from openclone.train.config import TrainConfig

    values: dict[str, Any] = {
        "dataset": dataset,
        "name": "act",
        "output_dir": output,
        "max_steps": 12,
        "learning_rate": 2e-3,
        "lr_scheduler": "constant",
        "warmup_ratio": 0.0,
        "lora_r": 8,
        "lora_dropout": 0.0,
        "batch_size": 1,
        "max_length": 256,
        "eval_steps": 6,
        "save_steps": 100,
        "seed": 7,
    }
    values.update(overrides)
    return TrainConfig(**values)


@dataclass
class Trained:
    home: Path
    dataset: Path
    result: Any  # TrainResult
    runner: Any  # SFTRunner, whose .trainer holds the trained PeftModel
    before: dict[str, Any]  # every parameter as training began
