"""A host-memory cache of evaluated prompts, so a prefix seen before is not evaluated again.

An engine's slots keep the KV of their last request, but with more conversations than
slots a returning chat finds its slot taken by someone else. Before a slot's KV is
overwritten the engine saves it here (the sequence's state as an opaque blob, with the
tokens it covers); a new request whose prompt shares a longer prefix with a saved entry
than with any free slot restores it and evaluates only the rest. Restoring costs a memory
copy; evaluating costs the model, about a thousand times more on a CPU.

Entries are kept least-recently-used first out, within a byte budget. An entry whose
tokens are a prefix of a newer one's is dropped: the newer one serves every prompt it did.
Each entry belongs to a scope (the tenant that sent it) and serves that scope only, so how
fast a first token comes cannot tell one tenant what another has asked.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

__all__ = ["CacheHit", "PromptCache", "common_prefix"]


def _pack(tokens: list[int]) -> bytes:
    return array("i", tokens).tobytes()


_ITEM = array("i").itemsize


def common_prefix(a: bytes, b: bytes) -> int:
    """How many leading tokens two packed token sequences share.

    Binary search over slice equality: each comparison is one memcmp, so a long shared
    prefix costs O(log n) C-speed comparisons instead of a Python loop over every token.
    """
    n = min(len(a), len(b)) // _ITEM
    if a[: n * _ITEM] == b[: n * _ITEM]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo] and a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[: mid * _ITEM] == b[: mid * _ITEM]:
            lo = mid
        else:
            hi = mid
    return lo


@dataclass
class _Entry:
    scope: str | None
    key: bytes  # packed tokens
    tokens: list[int]
    state: Any  # the engine's saved sequence state
    size: int  # bytes the state takes


@dataclass
class CacheHit:
    tokens: list[int]  # every token the saved state covers
    state: Any
    shared: int  # how many leading tokens the prompt shares with them


class PromptCache:
    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self._entries: OrderedDict[tuple[str | None, bytes], _Entry] = OrderedDict()  # oldest first
        self.used = 0
        self.hits = 0
        self.misses = 0
        self.saved_tokens = 0  # prompt tokens not evaluated thanks to a hit

    def __len__(self) -> int:
        return len(self._entries)

    def covered(self, tokens: list[int], scope: str | None = None) -> bool:
        """Whether an entry of ``scope`` holds all of these tokens (saving them adds nothing)."""
        key = _pack(tokens)
        return any(
            e.scope == scope and len(e.key) >= len(key) and e.key.startswith(key)
            for e in self._entries.values()
        )

    def lookup(
        self, prompt: list[int], scope: str | None = None, better_than: int = 0
    ) -> CacheHit | None:
        """The entry of ``scope`` sharing the longest prefix with ``prompt``, if longer than
        ``better_than``."""
        key = _pack(prompt)
        best: _Entry | None = None
        best_n = better_than
        for entry in self._entries.values():
            if entry.scope != scope:
                continue
            n = common_prefix(entry.key, key)
            if n > best_n:
                best, best_n = entry, n
        if best is None:
            self.misses += 1
            return None
        self.hits += 1
        self.saved_tokens += min(best_n, len(prompt) - 1)  # the last one is always evaluated
        self._entries.move_to_end((best.scope, best.key))
        return CacheHit(tokens=best.tokens, state=best.state, shared=best_n)

    def put(self, tokens: list[int], state: Any, size: int, scope: str | None = None) -> bool:
        """Keep ``state`` for ``tokens``; False when it exceeds the budget or adds nothing."""
        if size > self.budget or not tokens or self.covered(tokens, scope):
            return False
        key = _pack(tokens)
        for old in [
            e for e in self._entries.values() if e.scope == scope and key.startswith(e.key)
        ]:
            self._drop(old)
        self._entries[(scope, key)] = _Entry(scope, key, list(tokens), state, size)
        self.used += size
        while self.used > self.budget:
            self._drop(next(iter(self._entries.values())))
        return True

    def _drop(self, entry: _Entry) -> None:
        del self._entries[(entry.scope, entry.key)]
        self.used -= entry.size

    def stats(self) -> dict[str, int]:
        return {
            "entries": len(self._entries),
            "bytes": self.used,
            "budget_bytes": self.budget,
            "hits": self.hits,
            "misses": self.misses,
            "tokens_reused": self.saved_tokens,
        }
