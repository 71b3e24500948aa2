"""A PEFT LoRA adapter as a GGUF LoRA adapter, which llama.cpp applies to its base at run time.

llama.cpp reads ``general.type = adapter``, ``adapter.type = lora``, ``adapter.lora.alpha``
and, for each adapted weight ``W`` of the base (GGUF name, e.g. ``blk.3.attn_q.weight``), a
pair ``W.lora_a`` / ``W.lora_b`` that it adds as ``alpha / r * B @ A``. The arrays keep
PyTorch's orientation (A is [r, in], B is [out, r]); gguf-py writes them in ggml order, which
is what llama.cpp checks the shapes against.

The adapter was trained on the weights as transformers holds them. For llama-arch GGUF files
that differs from llama.cpp's layout: the HF->GGUF conversion permutes the rows of q and k
(rotary halves interleaved) and transformers undoes it when it loads a GGUF. So B of q/k gets
the same row permutation; A acts on the input side, which was not permuted.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from openclone.errors import ConfigError
from openclone.train.export import llama_permute

__all__ = ["convert_adapter"]

# GGUF architectures this converter knows -> whether llama.cpp stores q/k rows permuted.
# Only archs whose HF linear layers map one-to-one onto GGUF tensors (no fused qkv) belong
# here, with the permutation transformers' GGUF loader undoes (its LlamaTensorProcessor).
_ARCHS = {"llama": True, "qwen2": False, "qwen3": False}
# An HF directory's model_type -> the GGUF architecture llama.cpp's converter gives it.
_HF_ARCHS = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}
_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<ab>[AB])\.weight$")


@dataclass(frozen=True)
class _Base:
    """What the conversion needs to know of the base."""

    arch: str  # GGUF architecture
    n_layers: int
    n_head: int
    n_head_kv: int
    shapes: dict[str, tuple[int, int]] | None  # GGUF weight -> (in, out); None: not known


def _gguf_base(path: Path) -> _Base:
    import gguf

    reader = gguf.GGUFReader(path)

    def field(key: str) -> Any:
        if key not in reader.fields:
            raise ConfigError(f"{path.name} has no {key!r}; is it a model GGUF?")
        return reader.fields[key].contents()

    arch = str(field("general.architecture"))
    if arch not in _ARCHS:
        raise ConfigError(
            f"GGUF LoRA conversion supports {', '.join(sorted(_ARCHS))} bases, not {arch} "
            f"({path.name})"
        )
    n_head = int(field(f"{arch}.attention.head_count"))
    kv_key = f"{arch}.attention.head_count_kv"  # absent when it equals head_count
    return _Base(
        arch=arch,
        n_layers=int(field(f"{arch}.block_count")),
        n_head=n_head,
        n_head_kv=int(field(kv_key)) if kv_key in reader.fields else n_head,
        # GGUFReader gives ggml order: (in, out) for a weight stored as [out, in] in PyTorch.
        shapes={
            t.name: (int(t.shape[0]), int(t.shape[1])) for t in reader.tensors if len(t.shape) == 2
        },
    )


def _hf_base(path: Path) -> _Base:
    if not (path / "config.json").is_file():
        raise ConfigError(f"base {path} is neither a .gguf file nor an HF model directory")
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    model_type = config.get("model_type", "")
    if model_type not in _HF_ARCHS:
        raise ConfigError(
            f"GGUF LoRA conversion supports {', '.join(sorted(_HF_ARCHS))} models, not "
            f"{model_type or 'this'} ({path})"
        )
    n_head = int(config["num_attention_heads"])
    return _Base(
        arch=_HF_ARCHS[model_type],
        n_layers=int(config["num_hidden_layers"]),
        n_head=n_head,
        n_head_kv=int(config.get("num_key_value_heads") or n_head),
        shapes=None,  # llama.cpp checks the shapes against its GGUF when it loads the adapter
    )


def _read_adapter(adapter_dir: Path) -> tuple[dict[str, Any], dict[str, npt.NDArray[np.float32]]]:
    """(adapter_config.json, tensors as float32 numpy) of a PEFT adapter directory."""
    from safetensors.torch import load_file

    config_path = adapter_dir / "adapter_config.json"
    weights = adapter_dir / "adapter_model.safetensors"
    if not (config_path.is_file() and weights.is_file()):
        raise ConfigError(
            f"{adapter_dir} is not a PEFT adapter (no adapter_config.json/.safetensors)"
        )
    config = json.loads(config_path.read_text(encoding="utf-8"))
    # torch reads bf16 too, which numpy cannot; the adapter is small, float32 loses nothing.
    tensors = {k: v.float().numpy() for k, v in load_file(str(weights), device="cpu").items()}
    return config, tensors


def _check_config(config: dict[str, Any]) -> float:
    """The ``adapter.lora.alpha`` to write; refuses what llama.cpp cannot express."""
    if config.get("peft_type") != "LORA":
        raise ConfigError(f"only LoRA adapters convert to GGUF, not {config.get('peft_type')}")
    if config.get("use_dora"):
        raise ConfigError("DoRA adapters do not convert to GGUF LoRA (llama.cpp has no DoRA)")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        # llama.cpp has one alpha per file; per-module ranks and alphas would need rescaling.
        raise ConfigError("adapters with rank_pattern/alpha_pattern do not convert to GGUF LoRA")
    return float(config["lora_alpha"])


def _pairs(tensors: dict[str, npt.NDArray[np.float32]]) -> dict[str, dict[str, Any]]:
    """HF module name -> {"A": ..., "B": ...}; anything else in the adapter is refused."""
    pairs: dict[str, dict[str, Any]] = {}
    for key, value in tensors.items():
        match = _KEY.match(key)
        if match is None:
            raise ConfigError(
                f"adapter tensor {key!r} is not a LoRA A/B weight of a linear layer; GGUF LoRA "
                "holds only those (no modules_to_save, embeddings, biases or DoRA)"
            )
        pairs.setdefault(match["module"], {})[match["ab"]] = value
    incomplete = [m for m, p in pairs.items() if len(p) != 2]
    if incomplete:
        raise ConfigError(f"adapter lacks lora_A or lora_B for {incomplete[:3]}")
    return pairs


def _gguf_tensors(
    pairs: dict[str, dict[str, Any]], base: _Base, scale: float
) -> dict[str, npt.NDArray[np.float32]]:
    """``{GGUF weight}.lora_a/.lora_b`` arrays, in llama.cpp's layout."""
    import gguf

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[base.arch.upper()], base.n_layers)
    out: dict[str, npt.NDArray[np.float32]] = {}
    for module, pair in sorted(pairs.items()):
        a, b = pair["A"], pair["B"]
        name = names.get_name(f"{module}.weight", try_suffixes=(".weight",))
        if name is None or (base.shapes is not None and name not in base.shapes):
            raise ConfigError(
                f"target module {module!r} has no tensor in llama.cpp's {base.arch} base; GGUF "
                "LoRA supports the attention and MLP projections (q/k/v/o, gate/up/down)"
            )
        if base.shapes is not None and base.shapes[name] != (a.shape[1], b.shape[0]):
            raise ConfigError(
                f"{module}: adapter shape {b.shape[0]}x{a.shape[1]} does not match the base's "
                f"{name} {base.shapes[name][1]}x{base.shapes[name][0]}; wrong base?"
            )
        if _ARCHS[base.arch] and ".attn_q." in name:
            b = llama_permute(b, base.n_head)
        elif _ARCHS[base.arch] and ".attn_k." in name:
            b = llama_permute(b, base.n_head, base.n_head_kv)
        out[f"{name}.lora_a"] = np.ascontiguousarray(a, dtype=np.float32)
        out[f"{name}.lora_b"] = np.ascontiguousarray(b * scale, dtype=np.float32)
    return out


def convert_adapter(adapter_dir: Path, base: Path, out: Path) -> Path:
    """Write the PEFT adapter in ``adapter_dir`` as a GGUF LoRA at ``out`` and return ``out``.

    ``base`` is the model it was trained on: a ``.gguf`` file (its architecture, head counts
    and tensor shapes are checked against the adapter) or an HF directory (only its
    config.json is read; llama.cpp checks the shapes against its GGUF of that model when it
    loads the adapter). ``ConfigError`` when the architecture or a target module has no GGUF
    LoRA form.
    """
    import gguf

    base_info = _gguf_base(base) if base.is_file() else _hf_base(base)
    config, tensors = _read_adapter(adapter_dir)
    alpha = _check_config(config)
    pairs = _pairs(tensors)
    if not pairs:
        raise ConfigError(f"{adapter_dir} holds no LoRA weights")
    # llama.cpp scales by alpha / r; rsLoRA trained with alpha / sqrt(r), so B carries the rest
    # (one r for every module: _check_config refused rank patterns).
    scale = math.sqrt(int(config["r"])) if config.get("use_rslora") else 1.0
    arrays = _gguf_tensors(pairs, base_info, scale)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")  # a reader never sees half a file
    writer = gguf.GGUFWriter(tmp, base_info.arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    for name, array in arrays.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, out)
    return out
