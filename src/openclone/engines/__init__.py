"""Engines, registered by name through the ``openclone.engines`` entry-point group.

Built-in engines are declared in OpenClone's own pyproject exactly as a third-party
package would declare one, so adding a backend is one module plus one line there.

An engine class that sets ``runs_native_code = True`` (every :class:`LocalEngine`) is
served from a supervised worker process unless its model's params say
``isolation = "thread"``; the gateway process then never loads its native code.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import Any, Literal

from openclone.engines.base import Capabilities, Engine
from openclone.errors import ConfigError

Isolation = Literal["process", "thread"]

__all__ = ["Capabilities", "Engine", "Isolation", "available_engines", "create_engine"]

GROUP = "openclone.engines"


@cache
def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def available_engines() -> list[str]:
    return sorted(_entry_points())


def create_engine(
    engine: str, model: str, params: dict[str, Any], isolation: Isolation | None = None
) -> Engine:
    """Build the engine ``engine`` serving catalog model ``model`` with ``params``.

    ``isolation`` overrides the params' own choice (the worker process itself asks for
    "thread", so that it does not start a worker of its own).
    """
    params = dict(params)
    # Keys that choose how the engine runs, not what it does: the engine never sees them.
    chosen = params.pop("isolation", "process")
    memory_mb = params.pop("worker_memory_mb", None)
    start_timeout = params.pop("worker_start_timeout", 600.0)
    hang_timeout = params.pop("worker_hang_timeout", 60.0)
    if chosen not in ("process", "thread"):
        raise ConfigError(
            f"model {model!r}: isolation must be 'process' or 'thread', not {chosen!r}"
        )
    isolation = isolation or chosen
    cls = _engine_class(engine, model)
    if isolation == "process" and getattr(cls, "runs_native_code", False):
        from openclone.engines.supervised import SupervisedEngine, WorkerOptions

        try:
            options = WorkerOptions(
                memory_mb=int(memory_mb) if memory_mb else None,
                start_timeout=float(start_timeout),
                hang_timeout=float(hang_timeout),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"model {model!r}: bad worker setting: {exc}") from exc
        return SupervisedEngine(engine, model, params, options)
    result: Engine = cls.from_config(model, params)
    return result


def _engine_class(engine: str, model: str) -> Any:
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
    return cls
