"""What one entry of an upstream's models list says about the model's end: the date it
shuts down and whether it is deprecated.

Each upstream spells it its own way, so every spelling seen in the wild is read:

- OpenAI: ``shutdown_date`` ("YYYY-MM-DD" or null);
- Azure OpenAI: ``deprecation: {"inference": <unix seconds>, "fine_tune": ...}`` (only
  inference matters to a proxy) and ``lifecycle_status`` ("preview",
  "generally-available", "deprecating", "deprecated");
- OpenRouter: ``expiration_date`` ("YYYY-MM-DD" or null);
- other OpenAI-compatible servers: ``deprecation_date``, ``deprecated``.

A value that cannot be read as a date is ignored rather than trusted: a wrong early date
would make a loop distil in a hurry for nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Lifecycle", "lifecycle", "read_date"]

_DATE_FIELDS = ("shutdown_date", "expiration_date", "deprecation_date", "retirement_date")
_DEPRECATED_STATES = {"deprecating", "deprecated", "retiring", "retired"}
_MS_EPOCH = 1e11  # a timestamp above this is in milliseconds (1e11 s is the year 5138)
_EARLIEST = dt.date(2020, 1, 1)  # before any model an upstream lists today was announced


@dataclass(frozen=True)
class Lifecycle:
    shutdown: dt.date | None  # the earliest shutdown date the entry names
    deprecated: bool  # the upstream says so, dated or not


def read_date(value: Any) -> dt.date | None:
    """A date from "YYYY-MM-DD", an ISO timestamp, or epoch seconds or milliseconds; a date
    before 2020 is a placeholder (0, "1970-01-01"), not an announced shutdown."""
    day: dt.date | None = None
    if isinstance(value, bool):  # a bool is an int to Python, never a date
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if value > _MS_EPOCH else value
        try:
            day = dt.datetime.fromtimestamp(seconds, dt.UTC).date()
        except (OverflowError, OSError, ValueError):
            return None
    elif isinstance(value, str) and value.strip():
        try:
            day = dt.date.fromisoformat(value.strip()[:10])
        except ValueError:
            return None
    return day if day is not None and day >= _EARLIEST else None


def lifecycle(entry: Mapping[str, Any]) -> Lifecycle:
    """The shutdown date and deprecated flag of one models-list entry."""
    dates = [read_date(entry.get(name)) for name in _DATE_FIELDS]
    deprecation = entry.get("deprecation")
    if isinstance(deprecation, Mapping):
        dates.append(read_date(deprecation.get("inference")))
    else:
        dates.append(read_date(deprecation))
    known = [d for d in dates if d is not None]
    states = {str(entry.get(k) or "").lower() for k in ("lifecycle_status", "status")}
    deprecated = entry.get("deprecated") is True or bool(states & _DEPRECATED_STATES)
    return Lifecycle(min(known) if known else None, deprecated)
