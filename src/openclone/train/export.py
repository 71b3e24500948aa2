"""Export a trained adapter: merged into an HF directory, or into a GGUF file.

GGUF export needs no llama.cpp checkout for GGUF bases (the default): every metadata key
of the base file (tokenizer, chat template, architecture) is copied, and each tensor is
taken from the merged model, renamed with gguf-py's own name map, re-permuted where
llama.cpp stores it permuted, and quantized with gguf-py — or, for the K-quants and
i-quants gguf-py cannot write, written as F16 and quantized by llama.cpp's own quantizer
(:mod:`openclone.train.quantize`). HF-directory bases go through llama.cpp's
``convert_hf_to_gguf.py`` on the merged directory instead.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from openclone.errors import ConfigError
from openclone.store.trained import TrainedModel, get_trained
from openclone.train.quantize import LLAMA_QUANTS, llama_quantize

__all__ = [
    "EXPORT_QUANTS",
    "GGUF_QUANTS",
    "ExportResult",
    "export_model",
    "llama_permute",
    "load_merged",
    "write_merged_gguf",
]

log = logging.getLogger("openclone.train")

# Types gguf-py can quantize to in numpy (the K-quants it can only read).
GGUF_QUANTS = ("f32", "f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0")
# Every type export writes: gguf-py's, then llama.cpp's K-quants and i-quants.
EXPORT_QUANTS = GGUF_QUANTS + LLAMA_QUANTS
# Architectures whose llama.cpp tensors are the HF ones renamed, except where listed here.
_PERMUTED_ARCHS = {"llama"}
_CONVERTER = (
    "llama.cpp's converter: git clone https://github.com/ggml-org/llama.cpp && "
    "python llama.cpp/convert_hf_to_gguf.py MERGED_DIR --outtype q8_0 --outfile model.gguf "
    "(MERGED_DIR from `openclone export NAME --merged`)"
)


@dataclass(frozen=True)
class ExportResult:
    merged_dir: Path | None
    gguf_path: Path | None
    lora_gguf_path: Path | None = None


def llama_permute(
    w: npt.NDArray[Any], n_head: int, n_head_kv: int | None = None
) -> npt.NDArray[Any]:
    """HF q/k rows to llama.cpp's interleaved rotary layout (``convert_hf_to_gguf.permute``);
    transformers' GGUF loader applies the inverse, so this restores the file's layout."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    shape = w.shape
    return w.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def load_merged(record: TrainedModel) -> tuple[Any, Any]:
    """(the base with the adapter merged in, its tokenizer), float32 on CPU."""
    from peft import PeftModel

    from openclone.train.model import load_base

    model, tokenizer, _ = load_base(record.base_path)
    merged = PeftModel.from_pretrained(model, record.adapter_path).merge_and_unload()
    return merged, tokenizer


def _quantize(array: npt.NDArray[np.float32], quant: str) -> tuple[npt.NDArray[Any], Any]:
    import gguf

    qtype = gguf.GGMLQuantizationType[quant.upper()]
    if qtype == gguf.GGMLQuantizationType.F32:
        return array, qtype
    if qtype == gguf.GGMLQuantizationType.F16:
        return array.astype(np.float16), qtype
    block, _ = gguf.GGML_QUANT_SIZES[qtype]
    if array.shape[-1] % block:
        return array.astype(np.float16), gguf.GGMLQuantizationType.F16  # rows don't fill blocks
    return gguf.quants.quantize(array, qtype), qtype


def _file_type(quant: str) -> int:
    import gguf

    names = {"f32": "ALL_F32", "f16": "MOSTLY_F16", "bf16": "MOSTLY_BF16"}
    return int(gguf.LlamaFileType[names.get(quant, f"MOSTLY_{quant.upper()}")])


def write_merged_gguf(model: Any, base_gguf: Path, out: Path, quant: str = "q8_0") -> Path:
    """Write ``model`` (merged, HF names) as a GGUF with ``base_gguf``'s metadata and layout."""
    import gguf

    if quant not in GGUF_QUANTS:
        raise ConfigError(f"--quant {quant!r}: choose one of {', '.join(GGUF_QUANTS)}")
    reader = gguf.GGUFReader(base_gguf)
    arch = str(reader.fields["general.architecture"].contents())
    cfg = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], cfg.num_hidden_layers)
    state = {}
    for hf_name, tensor in model.state_dict().items():
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is not None:
            state[gguf_name] = tensor.detach().float().cpu().numpy()
    missing = [t.name for t in reader.tensors if t.name not in state]
    if missing or arch not in _PERMUTED_ARCHS:
        raise ConfigError(
            f"cannot map the merged {arch} model onto {base_gguf.name} "
            f"({len(missing)} tensors unmatched, e.g. {missing[:3]}); convert the merged "
            f"directory with {_CONVERTER}"
        )
    writer = gguf.GGUFWriter(out, arch)
    for field in reader.fields.values():
        if field.name == "general.architecture" or field.name.startswith("GGUF."):
            continue  # written by GGUFWriter itself
        value = _file_type(quant) if field.name == "general.file_type" else field.contents()
        sub = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, value, field.types[0], sub_type=sub)
    for t in reader.tensors:  # the base file's order and names
        array = state[t.name]
        if ".attn_q." in t.name:
            array = llama_permute(array, cfg.num_attention_heads)
        elif ".attn_k." in t.name:
            array = llama_permute(array, cfg.num_attention_heads, cfg.num_key_value_heads)
        if array.ndim == 1 or t.tensor_type == gguf.GGMLQuantizationType.F32:
            # Norms stay F32 as in the base file; llama.cpp expects them unquantized.
            writer.add_tensor(t.name, array.astype(np.float32))
            continue
        data, qtype = _quantize(np.ascontiguousarray(array), quant)
        writer.add_tensor(t.name, data, raw_dtype=qtype)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def export_model(
    name: str,
    *,
    merged: bool = False,
    gguf: bool = False,
    quant: str = "q8_0",
    output: Path | None = None,
    lora_gguf: bool = False,
    home: Path | None = None,
) -> ExportResult:
    """Export trained model ``name``: ``merged`` writes an HF directory with the adapter
    merged in, ``gguf`` a GGUF file for llama.cpp/Ollama; both come from one merge.
    ``lora_gguf`` writes the adapter alone as a GGUF LoRA (llama.cpp's ``--lora``), no merge.

    They go to ``<output>/merged/``, ``<output>/<name>.<quant>.gguf`` and
    ``<output>/<name>.lora.gguf``; ``output`` defaults to the run's directory.
    """
    if not (merged or gguf or lora_gguf):
        raise ConfigError("nothing to export: pass --merged, --gguf and/or --lora-gguf")
    if quant.lower() not in EXPORT_QUANTS:
        raise ConfigError(f"--quant {quant!r}: choose one of {', '.join(EXPORT_QUANTS)}")
    quant = quant.lower()  # Q4_K_M as llama.cpp spells it, q4_k_m in file names
    record = get_trained(name, home)
    base = Path(record.base_path)
    if gguf and base.suffix.lower() != ".gguf":
        raise ConfigError(
            f"{name!r} was trained on an HF directory ({base}); GGUF export from HF weights needs "
            f"{_CONVERTER}"
        )
    out_dir = output or Path(record.adapter_path).parent
    lora_path = None
    if lora_gguf:
        from openclone.train.gguf_lora import convert_adapter

        lora_path = convert_adapter(Path(record.adapter_path), base, out_dir / f"{name}.lora.gguf")
        log.info("GGUF LoRA written to %s", lora_path)
    if not (merged or gguf):
        return ExportResult(None, None, lora_path)
    model, tokenizer = load_merged(record)
    merged_dir = gguf_path = None
    if merged:
        merged_dir = out_dir / "merged"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # generation-config chatter from the GGUF defaults
            model.save_pretrained(merged_dir, safe_serialization=True)
        tokenizer.save_pretrained(merged_dir)
        log.info("merged model written to %s", merged_dir)
    if gguf:
        gguf_path = _write_gguf(model, base, out_dir / f"{name}.{quant}.gguf", quant)
        log.info("GGUF written to %s", gguf_path)
    return ExportResult(merged_dir, gguf_path, lora_path)


def _write_gguf(model: Any, base: Path, out: Path, quant: str) -> Path:
    """The merged GGUF at ``quant``: gguf-py's types directly, llama.cpp's from an F16 file."""
    if quant in GGUF_QUANTS:
        return write_merged_gguf(model, base, out, quant)
    f16 = out.with_name(out.name + ".f16.partial")
    try:
        write_merged_gguf(model, base, f16, "f16")
        return llama_quantize(f16, out, quant)
    finally:
        f16.unlink(missing_ok=True)
