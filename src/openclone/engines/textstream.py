"""Incremental detokenized text with OpenAI stop-sequence semantics.

Tokens arrive as bytes that may split a UTF-8 character; stop sequences may span tokens.
Text that could still be the start of a stop sequence is held back until it can't.
"""

from __future__ import annotations

import codecs


class StopAwareText:
    def __init__(self, stops: list[str]) -> None:
        self._stops = [s for s in stops if s]
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self.stopped = False

    def push(self, piece: bytes) -> str:
        """Add a token's bytes; return the text now safe to emit. Sets ``stopped``."""
        if self.stopped:
            return ""
        self._pending += self._decoder.decode(piece)
        if not self._stops:
            out, self._pending = self._pending, ""
            return out
        cut = self._first_stop(self._pending)
        if cut is not None:
            self.stopped = True
            out, self._pending = self._pending[:cut], ""
            return out
        hold = self._held_suffix(self._pending)
        out = self._pending[: len(self._pending) - hold]
        self._pending = self._pending[len(out) :]
        return out

    def flush(self) -> str:
        """At the end of generation: whatever was held back is real text."""
        if self.stopped:
            return ""
        out = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        return out

    def _first_stop(self, text: str) -> int | None:
        hits = [i for i in (text.find(s) for s in self._stops) if i >= 0]
        return min(hits) if hits else None

    def _held_suffix(self, text: str) -> int:
        longest = 0
        for stop in self._stops:
            for k in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:k]):
                    longest = k
                    break
        return longest
