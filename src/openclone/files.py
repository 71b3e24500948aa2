"""File helpers shared by every layer: the one definition of a file's SHA-256.

Export files, dataset cards and trained models' records all name a dataset by this hash, and
erasure lineage finds the models trained on erased captures by comparing them, so there is
exactly one way to compute it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["file_sha256"]


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of the file's bytes (no prefix), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
