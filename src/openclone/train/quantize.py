"""Quantize a GGUF file with llama.cpp's own quantizer (``llama_model_quantize``).

gguf-py can write only the simple block types in numpy (q8_0, q4_0 …); the K-quants and
i-quants that most GGUF models ship in come from llama.cpp's C++ quantizer, which
llama-cpp-python already carries — so no ``llama-quantize`` binary is needed. Tensors whose
rows do not fill a K-quant block (256 values) fall back to a type that fits, as in llama.cpp.
"""

from __future__ import annotations

import os
from pathlib import Path

from openclone.errors import ConfigError

__all__ = ["LLAMA_QUANTS", "llama_quantize"]

# llama.cpp's presets that need no importance matrix (IQ1/IQ2/IQ3 without one are poor,
# so they are left out), by the names ``llama-quantize`` takes, lower-cased.
LLAMA_QUANTS = (
    "q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m", "q6_k",
    "iq4_nl", "iq4_xs",
)  # fmt: skip


def llama_quantize(src: Path, dst: Path, quant: str, threads: int | None = None) -> Path:
    """Write ``src`` (an F16/F32 GGUF) quantized to ``quant`` as ``dst``."""
    from llama_cpp import llama_cpp

    if quant not in LLAMA_QUANTS:
        raise ConfigError(f"--quant {quant!r}: llama.cpp quantizes to {', '.join(LLAMA_QUANTS)}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant.upper()}")
    params.nthread = threads or os.cpu_count() or 1
    dst.parent.mkdir(parents=True, exist_ok=True)
    llama_cpp.llama_backend_init()
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0:
        dst.unlink(missing_ok=True)
        raise ConfigError(f"llama.cpp could not quantize {src.name} to {quant} (code {rc})")
    return dst
