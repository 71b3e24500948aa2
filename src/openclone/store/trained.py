"""Training runs' manifests: ``<home>/models/<run>/record.json``.

One JSON file per finished run says what its adapter is (base, dataset hash, config,
metrics), so the server can load the adapter when ``RUN`` or ``BASE:RUN`` is asked for.
Training writes these (``openclone.train``); the router reads them
(``openclone.routing.discovery``), so they live here, below both. They are not a registry:
the registry (``openclone.registry.trained``) lists runs as versions with aliases and
promotion, and training registers each finished run there. ``home`` is ``Settings.home``
(:func:`openclone.config.openclone_home` when not given), the one the server reads.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from openclone.config import openclone_home
from openclone.errors import ModelNotFound
from openclone.files import atomic_write

__all__ = ["TrainedModel", "get_trained", "list_trained", "record_path", "save_record"]


@dataclass(frozen=True)
class TrainedModel:
    name: str  # the run's name; served as NAME and as BASE:NAME
    base: str  # the base's catalog name
    base_path: str  # the base's HF directory or .gguf file
    adapter_path: str  # the PEFT adapter directory (adapter_model.safetensors)
    dataset: str
    dataset_sha256: str
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    # The adapter as a GGUF LoRA for llama.cpp; empty when it has none (older runs, or a base
    # whose architecture or target modules have no GGUF LoRA form).
    gguf_adapter: str = ""

    @property
    def served_as(self) -> str:
        return f"{self.base}:{self.name}"


def record_path(name: str, home: Path | None = None) -> Path:
    return (home or openclone_home()) / "models" / name / "record.json"


def save_record(model: TrainedModel, home: Path | None = None) -> Path:
    """Write atomically, so a reader never sees half a record."""
    path = record_path(model.name, home)
    atomic_write(path, json.dumps(asdict(model), indent=2))
    return path


def _load(path: Path) -> TrainedModel:
    data = json.loads(path.read_text(encoding="utf-8"))
    return TrainedModel(**data)


def list_trained(home: Path | None = None) -> list[TrainedModel]:
    """Every recorded model, newest first; unreadable records are skipped."""
    out = []
    for path in ((home or openclone_home()) / "models").glob("*/record.json"):
        try:
            out.append(_load(path))
        except (OSError, ValueError, TypeError):
            continue
    return sorted(out, key=lambda m: m.created, reverse=True)


def get_trained(name: str, home: Path | None = None) -> TrainedModel:
    """The record for ``name``; ``ModelNotFound`` when there is none."""
    path = record_path(name, home)
    if not path.is_file():
        known = ", ".join(m.name for m in list_trained(home)) or "none"
        raise ModelNotFound(f"no trained model named {name!r} (trained models: {known})")
    return _load(path)
