"""Loading a base model for training or export: an HF directory or a GGUF file."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from openclone.errors import ConfigError
from openclone.train.distributed import Placement

__all__ = ["base_config", "base_path", "load_base", "num_parameters", "pick_device"]


def pick_device(requested: str) -> str:
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no CUDA GPU is visible to torch")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def base_path(base: str | None) -> Path:
    """The base as a path: an HF directory or a ``.gguf`` file (``None``: the bundled GGUF)."""
    from openclone.config import bundled_model_path

    path = Path(base).expanduser() if base else bundled_model_path()
    if path.is_dir() and (path / "config.json").is_file():
        return path.resolve()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return path.resolve()
    raise ConfigError(f"base model {path} is neither an HF model directory nor a .gguf file")


def _where(path: Path) -> dict[str, str]:
    """``from_pretrained`` arguments naming the base: a directory, or a GGUF file in one."""
    if path.is_file():
        return {"pretrained_model_name_or_path": str(path.parent), "gguf_file": path.name}
    return {"pretrained_model_name_or_path": str(path)}


def base_config(path: Path) -> Any:
    """The base's transformers config, read without loading any weights."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(**_where(path))


def num_parameters(config: Any) -> int:
    """The parameter count of a model with ``config``, built on the meta device (no memory).

    A run needs it to settle its auto values, and those to build the ``SFTConfig``, which
    must exist before the weights load (it sets up the distributed state the loading obeys).
    It is also the true count for a base later loaded in 4-bit, whose packed weights count half.
    """
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(copy.deepcopy(config))
    return int(model.num_parameters())


def load_base(
    base: str | None,
    device: str = "cpu",
    *,
    place: Placement | None = None,
    attn: str | None = None,
    config: Any = None,
) -> tuple[Any, Any, Path]:
    """(model, tokenizer, path) in float32 on CPU, bf16 (or fp16) on GPU.

    ``place`` says where the weights go and whether they are 4-bit (see
    :func:`openclone.train.distributed.placement`); by default, all on ``device``. ``config``
    is the base's, when already read (reading a GGUF file's takes seconds).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = base_path(base)
    gpu = device == "cuda"
    if place is None:
        place = Placement(False, move_to="cuda" if gpu else None)
    dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if gpu else None
    kwargs: dict[str, Any] = {
        "dtype": dtype or torch.float32,
        "attn_implementation": attn or "sdpa",
    }
    where = _where(path)
    if place.load_in_4bit:  # placement() has refused it for a GGUF base
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
            **({"bnb_4bit_quant_storage": dtype} if place.quant_storage else {}),
        )
    if place.device_map is not None:
        kwargs["device_map"] = place.device_map
    if config is not None:
        kwargs["config"] = config
    tokenizer = AutoTokenizer.from_pretrained(**where)
    model: Any = AutoModelForCausalLM.from_pretrained(**where, **kwargs)
    if path.is_file():
        # The GGUF weights arrive fully dequantized in plain Linear layers; without this the
        # model still claims to be quantized and savers/trainers treat it as such.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    model.config._name_or_path = str(path)
    if place.move_to is not None:
        model.to(place.move_to)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, path
