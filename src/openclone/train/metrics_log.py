"""A run's metrics as JSON lines, one per log event and one per checkpoint.

A detached training job writes them into its job directory (``metrics.jsonl``), which is
where the fine-tuning API reads its ``metrics`` events and checkpoints from: the step, the
training and validation loss and token accuracy, the learning rate, and the tokens seen.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from openclone.store.db import open_private

__all__ = ["metrics_callback", "read_metrics"]

# Trainer log keys -> the names OpenAI's fine-tuning events use.
_KEYS = {
    "loss": "train_loss",
    "mean_token_accuracy": "train_mean_token_accuracy",
    "eval_loss": "valid_loss",
    "eval_mean_token_accuracy": "valid_mean_token_accuracy",
    "learning_rate": "learning_rate",
}


def metrics_callback(path: Path) -> Any:
    """A ``transformers.TrainerCallback`` appending to ``path`` (the main process only)."""
    from transformers import TrainerCallback

    def write(row: dict[str, Any]) -> None:
        with open_private(path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def base(state: Any) -> dict[str, Any]:
        return {
            "step": state.global_step,
            "total_steps": state.max_steps,
            "epoch": state.epoch,
            "tokens": state.num_input_tokens_seen,
            "time": time.time(),
        }

    class MetricsLog(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if not logs or not state.is_world_process_zero:
                return
            found = {name: float(logs[key]) for key, name in _KEYS.items() if key in logs}
            if found:
                write({**base(state), **found})

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.is_world_process_zero:
                write({**base(state), "checkpoint": f"checkpoint-{state.global_step}"})

    return MetricsLog()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Every row of ``path`` (none when it does not exist yet); a torn last line is skipped."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows
