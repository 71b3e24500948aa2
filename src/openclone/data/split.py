"""Where a row falls in a held-out split: a hash of its key and a seed, read as a number.

Evaluation (``openclone eval --split-of``) and training (the eval-loss split) both place a
row by this number, so a prompt held out for one is held out for the other.
"""

from __future__ import annotations

import hashlib

__all__ = ["split_unit"]


def split_unit(key: str, seed: int) -> float:
    """The SHA-256 of ``seed`` and ``key`` as a number in [0, 1); held out when below the
    split's fraction."""
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
