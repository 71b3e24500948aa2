"""Every model one name: the router, the names it understands, and how it is opened.

:func:`open_router` is the one way to get a router — the gateway, the in-process client
(distill, evaluate, the arena), the terminal chat and the jobs all use it, so every caller
reaches the same names: the catalog, ``BASE:ADAPTER``, registry aliases and ``NAME@N``
(followed as promotions happen), and trained models found on first use.
"""

from __future__ import annotations

from openclone.routing.open import open_router
from openclone.routing.router import ModelRoute, Replica, Router

__all__ = ["ModelRoute", "Replica", "Router", "open_router"]
