"""Loading a base model for training or export: an HF directory or a GGUF file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openclone.errors import ConfigError

__all__ = ["base_path", "load_base", "pick_device"]


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


def load_base(
    base: str | None, device: str = "cpu", *, load_in_4bit: bool = False, attn: str | None = None
) -> tuple[Any, Any, Path]:
    """(model, tokenizer, path) in float32 on CPU, bf16 (or fp16) on GPU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = base_path(base)
    gpu = device == "cuda"
    dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if gpu else None
    kwargs: dict[str, Any] = {
        "dtype": dtype or torch.float32,
        "attn_implementation": attn or "sdpa",
    }
    where = {"pretrained_model_name_or_path": str(path)}
    if path.is_file():
        where = {"pretrained_model_name_or_path": str(path.parent), "gguf_file": path.name}
        if load_in_4bit:
            raise ConfigError("4-bit (QLoRA) loading needs an HF model directory, not a GGUF file")
    if load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
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
    if gpu:
        model.to("cuda")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, path
