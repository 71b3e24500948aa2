"""Engines, registered by name through the ``openclone.engines`` entry-point group.

Built-in engines are declared in OpenClone's own pyproject exactly as a third-party
package would declare one, so adding a backend is one module plus one line there.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import Any

from openclone.engines.base import Capabilities, Engine
from openclone.errors import ConfigError

__all__ = ["Capabilities", "Engine", "available_engines", "create_engine"]

GROUP = "openclone.engines"


@cache
def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def available_engines() -> list[str]:
    return sorted(_entry_points())


def create_engine(engine: str, model: str, params: dict[str, Any]) -> Engine:
    """Build the engine ``engine`` serving catalog model ``model`` with ``params``."""
    eps = _entry_points()
    if engine not in eps:
        raise ConfigError(
            f"model {model!r}: unknown engine {engine!r}; available: {', '.join(sorted(eps))}"
        )
    try:
        cls = eps[engine].load()
    except ImportError as exc:
        raise ConfigError(
            f"model {model!r}: engine {engine!r} needs an optional dependency that is not "
            f"installed ({exc.name or exc}); install openclone with the matching extra"
        ) from exc
    result: Engine = cls.from_config(model, params)
    return result
