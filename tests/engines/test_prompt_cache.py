"""The prompt cache on its own: prefix matching, choice of entry, budget and eviction."""

from __future__ import annotations

import random
from array import array

from openclone.engines.prompt_cache import PromptCache, common_prefix


def packed(tokens: list[int]) -> bytes:
    return array("i", tokens).tobytes()


def naive_common(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def test_common_prefix_agrees_with_a_token_by_token_count() -> None:
    rng = random.Random(7)
    for _ in range(500):
        base = [rng.randrange(50_000) for _ in range(rng.randrange(0, 300))]
        cut = rng.randrange(0, len(base) + 1)
        other = base[:cut] + [rng.randrange(50_000) for _ in range(rng.randrange(0, 50))]
        assert common_prefix(packed(base), packed(other)) == naive_common(base, other)


def test_common_prefix_is_counted_in_tokens_not_bytes() -> None:
    # 256 and 512 share their low byte: a byte-wise count would say 1 token matched partly.
    assert common_prefix(packed([1, 256]), packed([1, 512])) == 1


def test_lookup_returns_the_longest_shared_prefix() -> None:
    cache = PromptCache(10_000)
    cache.put([1, 2, 3, 4], "short", 10)
    cache.put([1, 2, 9, 9, 9, 9], "other", 10)
    cache.put([5, 6, 7], "unrelated", 10)
    hit = cache.lookup([1, 2, 3, 4, 5, 6])
    assert hit is not None
    assert (hit.state, hit.shared, hit.tokens) == ("short", 4, [1, 2, 3, 4])


def test_lookup_ignores_entries_no_better_than_the_slot_already_has() -> None:
    cache = PromptCache(10_000)
    cache.put([1, 2, 3], "s", 10)
    assert cache.lookup([1, 2, 3, 4], better_than=3) is None
    assert cache.stats()["misses"] == 1
    assert cache.lookup([1, 2, 3, 4], better_than=2) is not None
    assert cache.stats()["hits"] == 1


def test_a_longer_entry_replaces_its_prefixes_and_a_covered_one_is_not_stored() -> None:
    cache = PromptCache(10_000)
    cache.put([1, 2], "a", 10)
    cache.put([1, 2, 3, 4], "b", 10)
    assert len(cache) == 1 and cache.used == 10
    assert cache.covered([1, 2, 3])
    assert not cache.put([1, 2, 3], "c", 10)
    assert not cache.covered([1, 2, 5])


def test_the_least_recently_used_entry_goes_first_when_over_budget() -> None:
    cache = PromptCache(25)
    cache.put([1], "one", 10)
    cache.put([2], "two", 10)
    assert cache.lookup([1, 7]) is not None  # [1] is now the most recent
    cache.put([3], "three", 10)
    assert cache.lookup([2, 7]) is None
    assert cache.lookup([1, 7]) is not None and cache.lookup([3, 7]) is not None
    assert cache.used == 20


def test_a_state_larger_than_the_budget_is_refused() -> None:
    cache = PromptCache(5)
    assert not cache.put([1, 2], "big", 6)
    assert len(cache) == 0


def test_an_entry_serves_only_its_own_scope() -> None:
    cache = PromptCache(10_000)
    cache.put([1, 2, 3, 4], "tenant a", 10, scope="a")
    assert cache.lookup([1, 2, 3, 4, 5], scope="b") is None
    assert cache.lookup([1, 2, 3, 4, 5]) is None  # no scope is a scope of its own
    assert not cache.covered([1, 2, 3], scope="b")
    hit = cache.lookup([1, 2, 3, 4, 5], scope="a")
    assert hit is not None and hit.state == "tenant a"
    # The same tokens from another tenant are kept beside, not instead of, tenant a's.
    assert cache.put([1, 2, 3, 4, 5], "tenant b", 10, scope="b")
    assert len(cache) == 2
