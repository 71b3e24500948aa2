"""The one parser for the model names clients send.

    NAME            a catalog model, a trained model, or a registry alias
    NAME@N          version N of registry model NAME (pinned: its target never changes)
    BASE:ADAPTER    the LoRA adapter ADAPTER served on catalog model BASE

Routes the router keeps for itself (one shared engine per base for trained adapters) are
keyed ``BASE+adapters``; :func:`is_internal` tells them apart so no listing shows them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ModelName", "adapters_key", "is_internal", "parse_model_name"]

_INTERNAL = "+adapters"


@dataclass(frozen=True)
class ModelName:
    raw: str
    base: str  # NAME, or BASE of BASE:ADAPTER
    adapter: str | None = None  # ADAPTER of BASE:ADAPTER
    version: int | None = None  # N of NAME@N

    @property
    def pinned(self) -> bool:
        return self.version is not None


def parse_model_name(name: str) -> ModelName:
    """Split a requested name into its parts; any string parses (unknown names are the
    router's business, not the parser's)."""
    base, sep, adapter = name.partition(":")
    if sep and base and adapter:
        return ModelName(raw=name, base=base, adapter=adapter)
    stem, at, number = name.rpartition("@")
    if at and stem and number.isdigit():
        return ModelName(raw=name, base=stem, version=int(number))
    return ModelName(raw=name, base=name)


def adapters_key(base: str) -> str:
    """The internal route key of the engine that serves every trained adapter of ``base``."""
    return base + _INTERNAL


def is_internal(route_key: str) -> bool:
    return route_key.endswith(_INTERNAL)
