"""Alpaca's near-duplicate filter, exact and fast.

Alpaca's generator walks the rows in order and drops a row when its ROUGE-L F-measure
(``rouge_score``'s tokenizer, no stemming) with any earlier *kept* row is greater than the
threshold. Done literally that is one O(m·n) Python DP per pair against every kept row,
over a hundred hours for 52K rows. This module makes the same decisions, bit for bit:

* the tokenizer and the F formula are rouge_score's, down to the floating-point operation
  order, so a pair whose F lands exactly on the threshold is decided the same way;
* instead of comparing F, each pair of lengths (m, n) gets the least LCS whose F exceeds
  the threshold, computed once with that same formula (F only grows with the LCS);
* prefix filtering (from set-similarity joins): tokens are ordered rarest first, and two
  rows can reach that LCS only if their rarest few tokens meet, so a row only meets the
  kept rows an inverted index on those tokens finds;
* upper bounds on the LCS prune those candidates in numpy, all at once: the position of
  the first shared token, then token counts per hash bucket; survivors get the exact
  multiset overlap and then the exact LCS, bit-parallel (Hyyrö) with Python ints as bit
  vectors: a few big-int operations per token instead of a DP row.
"""

from __future__ import annotations

import math
import re
from array import array
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["NearDuplicateFilter", "dedupe", "lcs_length", "rouge_l", "tokenize"]

# rouge_score lowercases, turns every run of characters outside [a-z0-9] into a space,
# splits on whitespace and keeps tokens matching ^[a-z0-9]+$: exactly the maximal
# [a-z0-9] runs of the lowercased text. Lowercasing first matters: "İ" lowers to "i̇"
# and the Kelvin sign to "k", so those do become tokens; other non-ASCII text does not.
_TOKEN_RE = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """The tokens ``rouge_score`` gives ``text`` (``use_stemmer=False``)."""
    return _TOKEN_RE.findall(text.lower())


def _match_masks(tokens: Sequence[object]) -> dict[object, int]:
    masks: dict[object, int] = {}
    for i, token in enumerate(tokens):
        masks[token] = masks.get(token, 0) | (1 << i)
    return masks


def _lcs_bits(masks: dict[object, int], m: int, other: Iterable[object]) -> int:
    # Hyyrö's bit-parallel LCS: bit i of v is cleared once a[i] ends a longer common
    # subsequence. Carries past bit m never reach the low m bits, so no masking per step;
    # tokens absent from `a` leave v unchanged and are skipped.
    v = full = (1 << m) - 1
    for token in other:
        u = masks.get(token)
        if u is not None:
            u &= v
            v = (v + u) | (v - u)
    return m - (v & full).bit_count()


def lcs_length(a: Sequence[object], b: Sequence[object]) -> int:
    """Length of the longest common subsequence of two token sequences."""
    if len(a) < len(b):
        a, b = b, a
    return _lcs_bits(_match_masks(a), len(a), b) if b else 0


def _fmeasure(lcs: int, n_target: int, n_prediction: int) -> float:
    # rouge_scorer._score_lcs and scoring.fmeasure, operation for operation.
    precision = lcs / n_prediction
    recall = lcs / n_target
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def rouge_l(target: Sequence[str], prediction: Sequence[str]) -> float:
    """ROUGE-L F-measure of two token lists, equal (==) to ``rouge_score``'s."""
    if not target or not prediction:
        return 0.0
    return _fmeasure(lcs_length(target, prediction), len(target), len(prediction))


_BUCKETS = 128  # width of the token-count signature (see _near_duplicate)


class NearDuplicateFilter:
    """Alpaca's ROUGE-L near-duplicate filter, fed one text at a time.

    ``add(text)`` answers whether the text is kept: False when its ROUGE-L F with any
    earlier kept text is greater than ``threshold``. ``vocabulary`` optionally lists tokens
    most frequent first (as :func:`dedupe` does); it only orders the index (rare tokens
    make short posting lists) and never changes a decision. Without it tokens rank in the
    order first seen, later ones as rarer, which is a fair guess for a growing set.
    """

    def __init__(self, threshold: float = 0.7, vocabulary: Iterable[str] = ()) -> None:
        if not 0.0 <= threshold <= 1.0:  # also refuses NaN
            raise ValueError(f"threshold must be between 0 and 1, got {threshold!r}")
        self.threshold = float(threshold)
        self.kept = 0
        self.dropped = 0
        self._ids: dict[str, int] = {}
        for token in vocabulary:
            self._ids.setdefault(token, len(self._ids))
        # Kept rows (those with tokens): token ids, multiset elements, and in numpy, for
        # the vectorised bounds, lengths and token-count signatures (grown by doubling).
        self._tokens: list[list[int]] = []
        self._elements: list[array[int]] = []
        self._lengths = np.zeros(1024, dtype=np.int64)
        self._signatures = np.zeros((1024, _BUCKETS), dtype=np.int32)
        # Element → (row << 32 | position) of every kept row with it in its prefix, as
        # int64 arrays numpy reads without converting Python ints.
        self._index: dict[int, array[int]] = {}
        self._seen: set[tuple[int, ...]] = set()
        self._tables: dict[int, tuple[npt.NDArray[np.int64], int, float]] = {}

    def need(self, m: int, n: int) -> int:
        """Least LCS whose F-measure for lengths m, n exceeds the threshold (min(m, n)+1:
        none does). F rises with the LCS by 2/(m+n) a step, far above rounding error."""
        needs = self._table(m)[0]
        return int(needs[n]) if n < len(needs) else self._least(m, n)

    def _least(self, m: int, n: int) -> int:
        top, t = min(m, n), self.threshold
        found = max(1, min(top + 1, math.floor(t * (m + n) / 2)))
        while found > 1 and _fmeasure(found - 1, m, n) > t:
            found -= 1
        while found <= top and not _fmeasure(found, m, n) > t:
            found += 1
        return found

    def _table(self, m: int) -> tuple[npt.NDArray[np.int64], int, float]:
        """For a row of m tokens: need(m, n) for n = 0 … ~8m (index 0 unused), its prefix
        length, and the longest partner that can still exceed the threshold."""
        table = self._tables.get(m)
        if table is None:
            longest = self._longest_partner(m)
            top = int(max(m, min(longest, 8 * m + 64)))
            needs = [m + 1] + [self._least(m, n) for n in range(1, top + 1)]
            # A partner of any length needs an LCS, hence a multiset overlap, of at least
            # `least`; two rows sharing `least` elements share one among the first
            # m - least + 1 of each (the first shared element in the global order).
            # need(m, n) only grows with n and is feasible at n = m (F = 1) unless the
            # threshold is 1, so the least need is at the shortest feasible partner.
            least = next((needs[n] for n in range(1, m + 1) if needs[n] <= n), m + 1)
            table = self._tables[m] = (np.array(needs, dtype=np.int64), m - least + 1, longest)
        return table

    def _longest_partner(self, m: int) -> float:
        # Past n = m the best F is at LCS = m, falling as n grows: search for the last n
        # where it still exceeds the threshold (infinite for a threshold of 0).
        t, low = self.threshold, m
        if not _fmeasure(m, m, m) > t:
            return 0
        high = 2 * m
        while _fmeasure(m, m, high) > t:
            if high > 1 << 40:
                return math.inf
            low, high = high, 2 * high
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if _fmeasure(m, m, middle) > t else (low, middle)
        return low

    def add(self, text: str) -> bool:
        """Decide ``text`` against the kept texts so far; remember it when kept."""
        return self.add_tokens(tokenize(text))

    def add_tokens(self, tokens: Sequence[str]) -> bool:
        """``add`` for text already tokenized with :func:`tokenize`."""
        kept = self._decide(tokens)
        if kept:
            self.kept += 1
        else:
            self.dropped += 1
        return kept

    def _decide(self, tokens: Sequence[str]) -> bool:
        ids_map = self._ids
        ids = [ids_map.setdefault(token, len(ids_map)) for token in tokens]
        m = len(ids)
        if m == 0:  # F is 0 against everything: kept, and nothing can match it later
            return True
        key = tuple(ids)
        # An exact repeat of any earlier row (kept, or dropped for a kept row that is
        # still here) has F = 1 against that kept row.
        if key in self._seen and self.need(m, m) <= m:
            return False
        self._seen.add(key)
        # A multiset as a set: the k-th occurrence of token id t is the element
        # t << 32 | (2**32-1-k). Higher ids are rarer, so descending order is rarest first.
        occurrences: dict[int, int] = {}
        elements = []
        for token in ids:
            k = occurrences.get(token, 0)
            occurrences[token] = k + 1
            elements.append((token << 32) | (0xFFFFFFFF - k))
        elements.sort(reverse=True)
        signature = np.bincount(np.array(ids) % _BUCKETS, minlength=_BUCKETS).astype(np.int32)
        prefix = elements[: self._table(m)[1]]
        if self._near_duplicate(ids, elements, prefix, signature):
            return False
        row = len(self._tokens)
        if row == len(self._lengths):
            self._lengths = np.concatenate([self._lengths, np.zeros_like(self._lengths)])
            self._signatures = np.concatenate([self._signatures, np.zeros_like(self._signatures)])
        self._tokens.append(ids)
        self._elements.append(array("q", elements))
        self._lengths[row] = m
        self._signatures[row] = signature
        index = self._index
        for position, element in enumerate(prefix):
            entry = (row << 32) | position
            posting = index.get(element)
            if posting is None:
                index[element] = array("q", (entry,))
            else:
                posting.append(entry)
        return True

    def _near_duplicate(
        self,
        ids: list[int],
        elements: list[int],
        prefix: list[int],
        signature: npt.NDArray[np.int32],
    ) -> bool:
        m = len(ids)
        needs, _, longest = self._table(m)
        postings, hits = [], []
        for position, element in enumerate(prefix):
            posting = self._index.get(element)
            if posting is not None:
                postings.append(posting)
                hits.append(position)
        if not postings:
            return False
        entries = np.concatenate([np.frombuffer(p, dtype=np.int64) for p in postings])
        # Each kept row once, at the first element of x's prefix it shares (the first
        # shared element in the global order): that is where the positional bound holds.
        rows, first = np.unique(entries >> 32, return_index=True)
        x_at = np.repeat(np.array(hits), [len(p) for p in postings])[first]
        y_at = entries[first] & 0xFFFFFFFF
        n = self._lengths[rows]
        least = needs[np.minimum(n, len(needs) - 1)]
        for k in np.flatnonzero((n >= len(needs)) & (n <= longest)):  # small thresholds
            least[k] = self._least(m, int(n[k]))
        least[n > longest] = m + 1
        # Upper bounds on the LCS, cheapest first: the positional bound (shared elements
        # all come at or after x_at in x and y_at in y; this also enforces the length
        # bound), then the overlap of token counts per bucket (merging tokens into
        # buckets can only raise the sum of minimums).
        keep = least <= np.minimum(m - x_at, n - y_at)
        rows, least = rows[keep], least[keep]
        keep = np.minimum(self._signatures[rows], signature).sum(axis=1) >= least
        masks: dict[object, int] | None = None
        mine = set(elements) if keep.any() else set()
        for row, row_least in zip(rows[keep].tolist(), least[keep].tolist(), strict=True):
            # The exact multiset overlap, then the exact LCS.
            if len(mine.intersection(self._elements[row])) < row_least:
                continue
            if masks is None:
                masks = _match_masks(ids)
            if _lcs_bits(masks, m, self._tokens[row]) >= row_least:
                return True
        return False


def dedupe(
    texts: Sequence[str],
    threshold: float = 0.7,
    on_progress: Callable[[int], None] | None = None,
) -> list[bool]:
    """Alpaca's keep/drop decision for each text, in order (True: kept).

    ``on_progress`` is called with the number of texts decided so far, every 1,000 texts.
    """
    token_lists = [tokenize(text) for text in texts]
    frequency: dict[str, int] = {}
    for tokens in token_lists:
        for token in set(tokens):
            frequency[token] = frequency.get(token, 0) + 1
    vocabulary = sorted(frequency, key=frequency.__getitem__, reverse=True)
    fast = NearDuplicateFilter(threshold, vocabulary)
    decisions = []
    for i, tokens in enumerate(token_lists, 1):
        decisions.append(fast.add_tokens(tokens))
        if on_progress is not None and (i % 1000 == 0 or i == len(token_lists)):
            on_progress(i)
    return decisions
