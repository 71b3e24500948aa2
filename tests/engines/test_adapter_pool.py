"""The retire-when-idle rule both in-process engines free removed adapters by."""

from __future__ import annotations

import threading

from openclone.engines.adapter_pool import RetiredAdapters


def test_a_retired_adapter_is_freed_only_once_no_running_sequence_uses_it() -> None:
    retired = RetiredAdapters()
    freed: list[str] = []
    busy: set[str | None] = {"a", None}
    # Removal comes from another thread (an archive on the event loop), freeing on this one.
    for name in ("a", "b"):
        t = threading.Thread(target=retired.put, args=(name,))
        t.start()
        t.join()

    retired.drain(lambda: busy, offered={"c"}, free=freed.append)
    assert freed == ["b"]  # "a" still decodes: kept

    retired.drain(lambda: busy, offered={"c"}, free=freed.append)
    assert freed == ["b"]  # still busy, and "b" is not freed twice

    busy.discard("a")
    retired.drain(lambda: busy, offered={"c"}, free=freed.append)
    assert freed == ["b", "a"]


def test_an_adapter_offered_again_before_it_goes_idle_is_kept() -> None:
    retired = RetiredAdapters()
    freed: list[str] = []
    retired.put("a")
    retired.drain(lambda: {"a"}, offered=set(), free=freed.append)
    # Added again while a request still used the old entry: the weights stay loaded.
    retired.drain(lambda: set(), offered={"a"}, free=freed.append)
    retired.drain(lambda: set(), offered=set(), free=freed.append)
    assert freed == []


def test_nothing_retired_asks_nobody_which_adapters_are_busy() -> None:
    def in_use() -> set[str | None]:
        raise AssertionError("asked on a step that retires nothing")

    RetiredAdapters().drain(in_use, offered=set(), free=lambda name: None)
