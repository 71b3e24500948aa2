"""Reading a models-list entry's shutdown date and deprecated flag, in every upstream's
spelling, and refusing what is not a date."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from openclone.engines.model_lifecycle import Lifecycle, lifecycle, read_date

JUNE = dt.date(2026, 6, 30)
JUNE_SECONDS = int(dt.datetime(2026, 6, 30, 12, tzinfo=dt.UTC).timestamp())


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        # Azure OpenAI: inference end as unix seconds; the fine-tune date is not a proxy's.
        ({"id": "gpt-4o", "lifecycle_status": "deprecating",
          "deprecation": {"fine_tune": 1, "inference": JUNE_SECONDS}},
         Lifecycle(JUNE, True)),
        ({"id": "gpt-4o", "lifecycle_status": "generally-available",
          "deprecation": {"inference": JUNE_SECONDS}}, Lifecycle(JUNE, False)),
        ({"id": "gpt-35", "lifecycle_status": "deprecated", "deprecation": {}},
         Lifecycle(None, True)),
        # OpenRouter
        ({"id": "openai/gpt-4o", "expiration_date": "2026-06-30"}, Lifecycle(JUNE, False)),
        ({"id": "openai/gpt-4o", "expiration_date": None}, Lifecycle(None, False)),
        # OpenAI
        ({"id": "gpt-4o", "object": "model", "shutdown_date": "2026-06-30"},
         Lifecycle(JUNE, False)),
        # other OpenAI-compatible servers
        ({"id": "m", "deprecation_date": "2026-06-30T00:00:00Z", "deprecated": True},
         Lifecycle(JUNE, True)),
        ({"id": "m", "deprecated": "yes"}, Lifecycle(None, False)),  # only a real true counts
        # several dates: the earliest is the one that bites
        ({"id": "m", "shutdown_date": "2026-09-01", "expiration_date": "2026-06-30"},
         Lifecycle(JUNE, False)),
        # a plain model entry says nothing
        ({"id": "m", "object": "model", "created": 0, "owned_by": "me"}, Lifecycle(None, False)),
    ],
)  # fmt: skip
def test_each_upstreams_spelling_is_read(entry: dict[str, Any], expected: Lifecycle) -> None:
    assert lifecycle(entry) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-06-30", JUNE),
        (JUNE_SECONDS, JUNE),
        (JUNE_SECONDS * 1000, JUNE),  # milliseconds
        (float(JUNE_SECONDS), JUNE),
        ("soon", None),
        ("", None),
        ("30/06/2026", None),
        (True, None),  # a bool is an int to Python, never a date
        (None, None),
        ([2026, 6, 30], None),
        (10**30, None),  # beyond any calendar
        (0, None),  # placeholders, not announced shutdowns
        ("1970-01-01", None),
    ],
)
def test_only_real_dates_are_read(value: Any, expected: dt.date | None) -> None:
    assert read_date(value) == expected


def test_an_unreadable_date_does_not_hide_a_readable_one() -> None:
    entry = {"id": "m", "shutdown_date": "garbage", "deprecation": {"inference": JUNE_SECONDS}}
    assert lifecycle(entry).shutdown == JUNE
