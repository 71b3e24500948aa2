"""Retiring LoRA adapters while serving, shared by the in-process engines.

An adapter removed (archived) while requests run must not be pulled from under a sequence
that decodes with it, and must not be freed if it was added again meanwhile. The removal
comes from any thread; the freeing happens on the engine's scheduler thread between two
steps, the only time no forward pass uses the weights. Each engine supplies what it alone
knows: which adapters its running sequences use, which it offers now, and how to free one
natively (``llama_adapter_lora_free``, PEFT's ``delete_adapter``).
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Collection, Container

__all__ = ["RetiredAdapters"]


class RetiredAdapters:
    """Adapters removed while serving, each freed once no running sequence uses it."""

    def __init__(self) -> None:
        self._removed: queue.SimpleQueue[str] = queue.SimpleQueue()  # any thread puts
        self._waiting: set[str] = set()  # scheduler thread only

    def put(self, name: str) -> None:
        """Mark ``name`` for freeing (any thread); the scheduler frees it when it is idle."""
        self._removed.put(name)

    def drain(
        self,
        in_use: Callable[[], Collection[str | None]],
        offered: Container[str],
        free: Callable[[str], None],
    ) -> None:
        """Between steps (scheduler thread): free each retired adapter no running sequence
        uses, unless it is ``offered`` again; the busy ones wait for a later step.

        ``in_use`` is only called when something waits: most steps retire nothing.
        """
        while not self._removed.empty():  # no exception per step on the common path
            self._waiting.add(self._removed.get_nowait())
        if not self._waiting:
            return
        busy = in_use()
        for name in list(self._waiting):
            if name in busy:
                continue  # a request is decoding with it: never pulled from under it
            self._waiting.discard(name)
            if name not in offered:  # not added again meanwhile
                free(name)
