"""The loop: capture → curate → distill → train → evaluate → shadow → canary → decide →
report, on a cadence.

- ``config``: :class:`LoopConfig`, one ``[[loops]]`` entry of openclone.toml
- ``runner``: :class:`LoopRunner`, one run as a table of recorded, resumable steps
- ``gather``, ``build``, ``judge``, ``shadow``, ``report``: the steps
- ``state``: runs, steps and the pause switch in the store
- ``schedule``: which loops are due, and the long-running scheduler
"""

from openclone.loop.config import LoopConfig, LoopError, get_loop, load_loops
from openclone.loop.runner import LoopRunner, LoopStepFailed

__all__ = ["LoopConfig", "LoopError", "LoopRunner", "LoopStepFailed", "get_loop", "load_loops"]
