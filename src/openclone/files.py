"""File helpers shared by every layer: the one definition of a file's SHA-256, and the one
atomic write.

Export files, dataset cards and trained models' records all name a dataset by this hash, and
erasure lineage finds the models trained on erased captures by comparing them, so there is
exactly one way to compute it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "file_sha256"]


def atomic_write(path: Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` (text as UTF-8) so that a reader sees the old file or
    the new one, never half of one, and a crash leaves no half file behind. The file is
    0600 from its first byte (``mkstemp``), and its directory is made if missing; the
    temporary name is unique, so concurrent writers never share one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of the file's bytes (no prefix), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
