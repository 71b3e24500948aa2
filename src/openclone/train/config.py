"""``TrainConfig``: everything one LoRA SFT run needs, documented and checked in one place.

Fields left as ``None`` are "auto": :meth:`TrainConfig.resolved` fills them from the size of
the loaded base model and the device, so a 135M model on a laptop CPU and an 8B model on a
GPU both get sensible settings without a flag. The resolved copy is what a run records.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from openclone.config import BUNDLED_MODEL_NAME, openclone_home
from openclone.errors import ConfigError
from openclone.train.distributed import Launch

# openclone_home is config's (Settings.home), re-exported for older imports.
__all__ = ["TrainConfig", "default_base_name", "openclone_home"]

Device = Literal["auto", "cpu", "cuda"]
# Also the adapter's name in ``BASE:NAME``; PEFT keys modules by it, so no dots.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_PATH_FIELDS = ("dataset", "eval_dataset", "output_dir", "home")
_SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")


def default_base_name(base: str | None) -> str:
    """The catalog name of a base given as a path: the bundled model's name, or the file or
    directory name (``.gguf`` dropped)."""
    return BUNDLED_MODEL_NAME if base is None else Path(base).name.removesuffix(".gguf")


@dataclass
class TrainConfig:
    """A LoRA supervised fine-tuning run on an OpenAI chat JSONL file."""

    # --- data ---
    dataset: Path
    """OpenAI chat JSONL: one ``{"messages": [...]}`` per line (``tools`` optional; an assistant
    message with ``"weight": 0`` is context, not a target)."""
    eval_dataset: Path | None = None
    """A separate JSONL for the evaluation loss; by default ``eval_fraction`` of ``dataset``."""
    eval_fraction: float = 0.1
    """Share of ``dataset`` held out for eval loss when ``eval_dataset`` is unset (0 disables)."""

    # --- model and outputs ---
    name: str | None = None
    """The run's name, served as ``NAME`` and ``BASE:NAME`` and registered as ``NAME@1``;
    default ``<dataset stem>-<YYYYmmdd-HHMMSS>`` (required when several processes train
    together: they must agree on it)."""
    register: str | None = None
    """Also add the result as a new version of this registry model (a candidate until
    ``openclone promote`` passes it through the gate)."""
    base: str | None = None
    """An HF model directory or a ``.gguf`` file; ``None`` is the bundled SmolLM2-135M-Instruct."""
    base_name: str | None = None
    """The base's catalog name (the ``BASE`` in ``BASE:ADAPTER``); default: bundled name or stem."""
    output_dir: Path | None = None
    """Where adapter, checkpoints and report go; default ``<home>/models/<name>``."""
    home: Path | None = None
    """The data home the run's record goes to (where the server looks for it); default
    ``Settings.home`` as found from the environment (``$OPENCLONE_HOME``, else ``home`` in
    ./openclone.toml). Callers holding other settings pass theirs."""

    # --- schedule ---
    epochs: float = 3.0
    """Passes over the training split; ignored when ``max_steps`` > 0."""
    max_steps: int = -1
    """Optimizer steps to run; > 0 overrides ``epochs`` (and makes runs comparable)."""
    learning_rate: float | None = None
    """Peak LR; auto: higher for small models (LoRA tolerates ~1e-3 at 135M, ~2e-4 at 8B)."""
    learning_rate_multiplier: float = 1.0
    """Scales the peak LR, given or auto (OpenAI's fine-tuning ``learning_rate_multiplier``)."""
    lr_scheduler: str = "cosine"
    """One of linear, cosine, constant, constant_with_warmup."""
    warmup_ratio: float = 0.03
    """Share of the steps spent warming up the LR."""
    weight_decay: float = 0.0
    """AdamW weight decay on the LoRA weights."""
    batch_size: int | None = None
    """Sequences (packed rows when packing) per device per step; auto by device and size."""
    gradient_accumulation_steps: int = 1
    """Micro-batches per optimizer step."""
    max_length: int | None = None
    """Tokens per sequence (the packed row length); auto: 512 on CPU, 2048 on GPU, capped by
    the model's context. Longer conversations are truncated (the run logs how many)."""
    packing: bool | None = None
    """Pack conversations into ``max_length`` rows with positions reset per conversation, so
    no token attends across examples (padding-free BFD); auto: on."""

    # --- LoRA ---
    lora_r: int | None = None
    """LoRA rank; auto: 8 below 300M parameters, 16 up to 8B, 32 above."""
    lora_alpha: int | None = None
    """LoRA scaling numerator; auto: ``2 * lora_r``."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA input."""
    lora_target_modules: list[str] | str = "all-linear"
    """Modules that get adapters: ``"all-linear"`` (attention + MLP) or explicit names."""

    # --- device and precision ---
    device: Device = "auto"
    """``auto`` uses CUDA when present, else CPU. Several GPUs: see docs/training.md."""
    load_in_4bit: bool | None = None
    """QLoRA: load the base in 4-bit NF4 (needs bitsandbytes and CUDA; HF bases only); auto:
    on exactly when those exist, the base is an HF directory and the run is not sharded with
    FSDP or DeepSpeed ZeRO-3."""
    gradient_checkpointing: bool | None = None
    """Recompute activations to save memory; auto: on for GPUs with models over 1B."""
    attn_implementation: str | None = None
    """Attention kernel; auto: flash_attention_2 on GPU when installed, else sdpa."""

    # --- checkpoints, logging, reproducibility ---
    save_steps: int = 50
    """Checkpoint every this many steps (a cancelled run also saves one as it stops)."""
    save_total_limit: int = 2
    """Checkpoints kept; older ones are deleted."""
    eval_steps: int | None = None
    """Evaluate every this many steps; auto: about ten evaluations per run."""
    logging_steps: int = 1
    """Log the training loss every this many steps (feeds the loss curve)."""
    resume: bool = False
    """Continue from the newest checkpoint in ``output_dir`` (after a crash or Ctrl-C)."""
    seed: int = 42
    """Seeds data order, the eval split, LoRA init and dropout."""
    cost_per_hour: float = 0.0
    """$ per hour of the machine (per GPU on GPUs), for the report's cost estimate."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Further ``trl.SFTConfig`` keyword arguments, passed through unchecked (escape hatch)."""

    def __post_init__(self) -> None:
        for name in _PATH_FIELDS:
            value = getattr(self, name)
            if isinstance(value, str):
                setattr(self, name, Path(value).expanduser())
        problems = list(self._problems())
        if problems:
            raise ConfigError("invalid training config:\n  " + "\n  ".join(problems))
        # Decided once here, so a saved config names the same run when it is resumed.
        if self.name is None:
            stem = re.sub(r"[^A-Za-z0-9_-]+", "-", self.dataset.stem).strip("-_") or "run"
            self.name = f"{stem[:40]}-{time.strftime('%Y%m%d-%H%M%S')}"
        if self.base_name is None:
            self.base_name = default_base_name(self.base)
        if self.output_dir is None:
            self.output_dir = (self.home or openclone_home()) / "models" / self.name

    def _problems(self) -> list[str]:
        out: list[str] = []

        def need(ok: bool, message: str) -> None:
            if not ok:
                out.append(message)

        need(isinstance(self.dataset, Path), "dataset: a path to an OpenAI chat JSONL file")
        need(0 <= self.eval_fraction < 1, "eval_fraction: must be in [0, 1)")
        need(
            self.name is None or bool(_NAME.match(self.name)),
            "name: letters, digits, _ and - only (at most 64)",
        )
        need(
            self.register is None or bool(_NAME.match(self.register)),
            "register: letters, digits, _ and - only (at most 64)",
        )
        need(self.epochs > 0 and math.isfinite(self.epochs), "epochs: must be > 0")
        need(isinstance(self.max_steps, int) and self.max_steps != 0, "max_steps: -1 or > 0")
        need(self.learning_rate is None or 0 < self.learning_rate < 1, "learning_rate: in (0, 1)")
        need(
            0 < self.learning_rate_multiplier <= 100
            and math.isfinite(self.learning_rate_multiplier),
            "learning_rate_multiplier: in (0, 100]",
        )
        need(self.lr_scheduler in _SCHEDULERS, f"lr_scheduler: one of {', '.join(_SCHEDULERS)}")
        need(0 <= self.warmup_ratio < 1, "warmup_ratio: must be in [0, 1)")
        need(self.weight_decay >= 0, "weight_decay: must be >= 0")
        for pos in ("batch_size", "max_length", "lora_r", "lora_alpha", "eval_steps"):
            value = getattr(self, pos)
            need(value is None or (isinstance(value, int) and value > 0), f"{pos}: an integer > 0")
        for pos in ("gradient_accumulation_steps", "save_steps", "save_total_limit"):
            value = getattr(self, pos)
            need(isinstance(value, int) and value > 0, f"{pos}: an integer > 0")
        need(self.logging_steps > 0, "logging_steps: an integer > 0")
        need(0 <= self.lora_dropout < 1, "lora_dropout: must be in [0, 1)")
        need(self.device in ("auto", "cpu", "cuda"), "device: auto, cpu or cuda")
        need(self.cost_per_hour >= 0, "cost_per_hour: must be >= 0")
        need(self.max_length is None or self.max_length >= 16, "max_length: at least 16")
        processes = Launch.from_env().world_size
        # Each process builds its own config; a default name holds the second it was built,
        # and processes that disagree on it write to different run directories.
        need(
            self.name is not None or processes == 1,
            f"name: required when {processes} processes train together (WORLD_SIZE): "
            "give --name (or name in train.toml) so that every process uses the same run",
        )
        return out

    @property
    def run_name(self) -> str:
        """The registry name (always set after construction)."""
        return self.name or "run"

    @property
    def run_dir(self) -> Path:
        """The output directory (always set after construction)."""
        return self.output_dir or (self.home or openclone_home()) / "models" / self.run_name

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def adapter_dir(self) -> Path:
        return self.run_dir / "adapter"

    # ---- loading --------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from plain values (TOML, JSON); unknown keys are an error, not ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown training option(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        if "dataset" not in data:
            raise ConfigError("training config: 'dataset' is required")
        try:
            return cls(**data)
        except TypeError as exc:  # a value of the wrong type reached a comparison
            raise ConfigError(f"invalid training config: {exc}") from exc

    @classmethod
    def from_toml(cls, path: Path, **overrides: Any) -> TrainConfig:
        """Read ``path`` (keys at top level or under ``[train]``); non-None overrides win.

        Relative paths inside the file are relative to the file, as a reader expects.
        """
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"training config not found: {path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        data = dict(data.get("train", data))
        for key in (*_PATH_FIELDS, "base"):
            value = data.get(key)
            if isinstance(value, str) and not Path(value).expanduser().is_absolute():
                data[key] = str(path.parent / value)
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (paths as strings), the form written to records and job specs."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, Path):
                out[key] = str(value)
        return out

    # ---- auto values ----------------------------------------------------------------------

    def resolved(self, *, num_params: int, device: str, max_positions: int | None) -> TrainConfig:
        """A copy with every auto (``None``) field decided for this model size and device."""
        gpu = device == "cuda"
        billions = num_params / 1e9
        r = self.lora_r or (8 if billions < 0.3 else 16 if billions <= 8 else 32)
        length = self.max_length or (2048 if gpu else 512)
        if max_positions:
            length = min(length, max_positions)
        if self.batch_size is not None:
            batch = self.batch_size
        elif gpu:
            # ~16k tokens per micro-step for small models, fewer as activations grow.
            budget = 16384 if billions < 1 else 8192 if billions <= 8 else 4096
            batch = max(1, budget // length)
        else:
            batch = 2
        lr = self.learning_rate or (1e-3 if billions < 0.5 else 5e-4 if billions < 2 else 2e-4)
        lr *= self.learning_rate_multiplier
        return dataclasses.replace(
            self,
            lora_r=r,
            lora_alpha=self.lora_alpha or 2 * r,
            max_length=length,
            batch_size=batch,
            learning_rate=lr,
            learning_rate_multiplier=1.0,  # applied: a resolved config names the LR it runs at
            packing=True if self.packing is None else self.packing,
            gradient_checkpointing=(
                (gpu and billions > 1)
                if self.gradient_checkpointing is None
                else self.gradient_checkpointing
            ),
        )
