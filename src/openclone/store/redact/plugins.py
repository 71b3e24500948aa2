"""Choosing the redactor: the built-in one, or a plug-in named ``module:attr``."""

from __future__ import annotations

import importlib
from typing import Any

from openclone.errors import ConfigError
from openclone.store.redact.base import RedactionResult, Redactor
from openclone.store.redact.redactor import default_redactor

__all__ = ["load_redactor"]


def load_redactor(spec: str | None) -> Redactor:
    """``None``/``"default"``: the regex redactor; ``"module:attr"``: yours.

    ``attr`` (dots allowed) names a callable ``(text) -> RedactionResult`` or a class whose
    no-argument instances are one. It is tried once on ``""`` so that a bad plug-in fails at
    startup rather than on the first capture.
    """
    if spec is None or spec.strip() in ("", "default"):
        return default_redactor
    module, sep, attr = spec.strip().partition(":")
    if not sep or not module or not attr:
        raise ConfigError(f"redactor {spec!r}: expected 'default' or 'module:attr'")
    try:
        found: Any = importlib.import_module(module)
        for name in attr.split("."):
            found = getattr(found, name)
        if isinstance(found, type):
            found = found()
    except Exception as exc:  # an import runs arbitrary code; any failure is a config error
        raise ConfigError(f"redactor {spec!r} cannot be loaded: {exc}") from exc
    if not callable(found):
        raise ConfigError(f"redactor {spec!r} is not callable")
    try:
        probe = found("")
    except Exception as exc:
        raise ConfigError(f"redactor {spec!r} failed on an empty text: {exc}") from exc
    if not isinstance(probe, RedactionResult):
        raise ConfigError(
            f"redactor {spec!r} returned {type(probe).__name__}, not a RedactionResult"
        )
    redactor: Redactor = found
    return redactor
