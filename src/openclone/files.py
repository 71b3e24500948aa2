"""File helpers shared by every layer: the one definition of a file's SHA-256, the one
atomic write, and the one way OpenClone makes a directory (0700: what it writes is people's
data and models, for the account running it only).

Export files, dataset cards and trained models' records all name a dataset by this hash, and
erasure lineage finds the models trained on erased captures by comparing them, so there is
exactly one way to compute it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

__all__ = ["PRIVATE_DIR", "atomic_write", "file_sha256", "make_private_dir"]

PRIVATE_DIR = 0o700


def make_private_dir(path: Path) -> None:
    """``mkdir -p`` where a directory OpenClone creates is 0700 (one that exists is left as
    its owner set it: a shared group directory may be deliberate)."""
    if path.is_dir():
        return
    if not path.parent.exists():
        make_private_dir(path.parent)
    try:
        path.mkdir(mode=PRIVATE_DIR)
    except FileExistsError:
        return  # another process made it first
    os.chmod(path, PRIVATE_DIR)  # mkdir's mode is filtered by the umask; chmod is not


def atomic_write(path: Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` (text as UTF-8) so that a reader sees the old file or
    the new one, never half of one, and a crash leaves no half file behind. The file is
    0600 from its first byte (``mkstemp``), and its directory is made (0700) if missing; the
    temporary name is unique, so concurrent writers never share one."""
    make_private_dir(path.parent)
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
