"""One process or several: how a run was launched, and what that decides.

``accelerate launch`` and ``torchrun`` describe the job to each process through environment
variables (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``ACCELERATE_USE_FSDP``,
``ACCELERATE_USE_DEEPSPEED``, ``ACCELERATE_DEEPSPEED_ZERO_STAGE``,
``ACCELERATE_DEEPSPEED_CONFIG_FILE``): the same ones accelerate reads to build its state. Reading
them here, without torch, lets the run decide where the base goes (:func:`placement`) before
any GPU memory is touched, and lets tests drive every launch shape on a CPU.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from openclone.errors import ConfigError

__all__ = ["Launch", "Placement", "any_process", "is_main_process", "placement"]

Strategy = Literal["single", "ddp", "fsdp", "zero3"]
_TRUE = ("1", "true", "yes", "y", "on", "t")


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    try:
        return int(env.get(key, ""))
    except ValueError:
        return default


def _zero_stage(env: Mapping[str, str]) -> int:
    # A DeepSpeed JSON given to the launcher wins over the flag, as in accelerate's plugin.
    path = env.get("ACCELERATE_DEEPSPEED_CONFIG_FILE", "none")
    if path != "none":
        try:
            stage = json.loads(Path(path).read_text())["zero_optimization"]["stage"]
        except (OSError, ValueError, KeyError, TypeError):
            stage = None
        if isinstance(stage, int):
            return stage
    return _int(env, "ACCELERATE_DEEPSPEED_ZERO_STAGE", 2)  # accelerate's own default


@dataclass(frozen=True)
class Launch:
    """This process's place in the job: ``strategy`` is how the model is spread over GPUs."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    strategy: Strategy = "single"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Launch:
        env = os.environ if env is None else env
        world = max(1, _int(env, "WORLD_SIZE", 1))
        strategy: Strategy
        if env.get("ACCELERATE_USE_FSDP", "").lower() in _TRUE:
            strategy = "fsdp"
        elif env.get("ACCELERATE_USE_DEEPSPEED", "").lower() in _TRUE and _zero_stage(env) == 3:
            strategy = "zero3"
        else:  # ZeRO-1/2 keep a whole model per GPU, so they load like DDP
            strategy = "ddp" if world > 1 else "single"
        return cls(world, _int(env, "RANK", 0), _int(env, "LOCAL_RANK", 0), strategy)

    @property
    def several(self) -> bool:
        return self.world_size > 1

    @property
    def sharded(self) -> bool:
        """FSDP or ZeRO-3: the Trainer (accelerate) places and shards the weights itself."""
        return self.strategy in ("fsdp", "zero3")

    def with_trainer_args(self, args: Any) -> Launch:
        """Also count sharding switched on through the SFTConfig (``fsdp=`` or ``deepspeed=`` in
        ``extra``) rather than by the launcher; call once ``args`` exists."""
        from transformers.integrations import is_deepspeed_zero3_enabled

        if getattr(args, "fsdp", None) and self.strategy != "fsdp":
            return replace(self, strategy="fsdp")
        if is_deepspeed_zero3_enabled() and self.strategy != "zero3":
            return replace(self, strategy="zero3")
        return self


@dataclass(frozen=True)
class Placement:
    """How this process loads the base (``load_base`` applies it)."""

    load_in_4bit: bool
    device_map: dict[str, int] | None = None
    """``from_pretrained``'s ``device_map``: 4-bit weights are quantized as they land on it."""
    move_to: str | None = None
    """Where to move the loaded model; ``None`` leaves it where it loaded (CPU, or the
    ``device_map``, or FSDP/ZeRO-3's own placement)."""
    quant_storage: bool = False
    """Store 4-bit weights in the compute dtype: FSDP and ZeRO-3 can only shard float tensors
    of one dtype, and would otherwise wrap every 4-bit layer alone or refuse it."""


def placement(
    device: str, want_4bit: bool | None, *, bnb: bool, gguf: bool, launch: Launch
) -> Placement:
    """Where the base goes and whether it is 4-bit, for ``device`` ("cpu" or "cuda"), the
    ``load_in_4bit`` setting (``None``: auto), whether bitsandbytes is installed, whether the
    base is a GGUF file, and the launch."""
    gpu = device == "cuda"
    if want_4bit and (not gpu or not bnb):
        raise ConfigError("load_in_4bit (QLoRA) needs a CUDA GPU and bitsandbytes installed")
    if want_4bit and gguf:
        raise ConfigError("4-bit (QLoRA) loading needs an HF model directory, not a GGUF file")
    if want_4bit is None:
        # Auto stays off when sharding: the sharded bf16 base is what FSDP/ZeRO-3 are chosen for,
        # and 4-bit there is a separate recipe (quant_storage, more memory per rank at load).
        want_4bit = gpu and bnb and not gguf and not launch.sharded
    if want_4bit:
        # Every process quantizes its own copy straight onto its own GPU; without the map all
        # of them would land on the current device, GPU 0, at load time.
        return Placement(True, {"": launch.local_rank}, quant_storage=launch.sharded)
    if not gpu or launch.sharded:
        # FSDP (rank 0 loads, the others get meta tensors, then shards are broadcast) and ZeRO-3
        # (partitioned as it loads) move the weights themselves; moving here defeats that.
        return Placement(False)
    if launch.several:
        return Placement(False, move_to=f"cuda:{launch.local_rank}")
    return Placement(False, move_to="cuda")


def is_main_process() -> bool:
    """Whether this is global rank 0 (true when there is only one process). Call it once the
    distributed state exists: building the ``SFTConfig`` creates it."""
    from accelerate import PartialState

    return bool(PartialState().is_main_process)


def any_process(flag: bool, device: Any) -> bool:
    """``flag`` or'ed over every process: all of them get the same answer. A collective when
    there are several, so every process must call it at the same point of the run; ``device``
    holds the exchanged value (a CUDA device under NCCL)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return flag
    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
