"""Bake a trained version: its run merged into one GGUF, registered as a new version.

A baked version serves with llama.cpp and no adapter at serving time; it keeps the
lineage and metrics of the version it came from, plus ``baked_from`` (that version,
pinned) and the quantisation, so a promotion to it is judged on the same evidence.
"""

from __future__ import annotations

from pathlib import Path

from openclone.errors import InvalidRequestError
from openclone.model_names import parse_model_name
from openclone.registry.versions import VersionInfo, get_version, register
from openclone.store import Store
from openclone.train.export import export_model

__all__ = ["bake"]


def bake(
    store: Store, name: str, version: int, quant: str, *, home: Path
) -> tuple[VersionInfo, Path]:
    """The new version of ``name`` serving ``name@version``'s trained run as one GGUF,
    and that GGUF's path (written under ``home``)."""
    v = get_version(store, name, version)
    run = parse_model_name(v.target).adapter
    if v.engine is not None or run is None:
        raise InvalidRequestError(f"{v.pinned} serves {v.target}, not a trained run: no bake")
    result = export_model(run, gguf=True, quant=quant, home=home)
    assert result.gguf_path is not None  # gguf=True writes one
    engine = {"engine": "llamacpp", "params": {"model_path": str(result.gguf_path)}}
    lineage = {**v.lineage, "baked_from": v.pinned, "quant": quant.lower()}
    baked = register(store, name, engine=engine, lineage=lineage, metrics=v.metrics)
    return baked, result.gguf_path
