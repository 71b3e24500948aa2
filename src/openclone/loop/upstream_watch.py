"""The deprecation watch's second source: what the upstream of a proxied closed model says
in its models list (``GET /models``), recorded in the store.

A loop distils a closed model (its teacher, or the ``capture_model`` whose traffic it
learns from) served through the ``openai`` engine. Once a day the scheduler asks each such
model's upstream for its models list and records, per catalog model, what the entry says
(:mod:`openclone.engines.model_lifecycle`): its shutdown date and whether it is
deprecated. A model missing from a list that was read is "gone": the upstream no longer
offers it, it may already be failing, and its loop should distil on its deprecation cadence
(its effective shutdown date is today). A list that cannot be read (the upstream away, a bad key) is
logged, recorded as the error, and changes nothing: the last good answer, or the
configured ``[deprecations]`` date, stays in force. A failed read is tried again after an
hour, a good one after a day.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from openclone.config import Settings
from openclone.engines.model_lifecycle import lifecycle
from openclone.engines.openai_upstream import OpenAIEngine
from openclone.errors import ConfigError
from openclone.loop.config import LoopConfig
from openclone.loop.state import iso_utc
from openclone.store.db import Store
from openclone.store.tables import UpstreamModel
from openclone.store.upsert import dialect_insert

__all__ = [
    "CHECK_EVERY",
    "RETRY_AFTER",
    "Proxied",
    "UpstreamReport",
    "effective_date",
    "proxied",
    "refresh",
    "report",
    "reports",
    "watch_rows",
    "watched_models",
]

log = logging.getLogger("openclone.loop")

CHECK_EVERY = 86400.0  # a good read stands this long: shutdown dates move in weeks
RETRY_AFTER = 3600.0  # a failed read is tried again this much later
TIME_LIMIT = 10.0  # seconds one models list may take; the scheduler waits for it


@dataclass(frozen=True)
class Proxied:
    """A catalog model served by the ``openai`` engine: where its upstream is."""

    model: str  # the catalog name
    params: dict[str, Any]  # the ``openai`` engine's params (its first such replica)
    upstream: str  # the base URL
    upstream_model: str  # the upstream's name for it

    def engine(self) -> OpenAIEngine:
        return OpenAIEngine.from_config(self.model, self.params)

    @property
    def group(self) -> str:
        """Models with the same upstream and credentials share one models list."""
        return json.dumps({k: v for k, v in self.params.items() if k != "model"}, sort_keys=True)


@dataclass(frozen=True)
class UpstreamReport:
    model: str
    upstream: str
    upstream_model: str
    state: str  # listed | deprecated | gone | unlisted (not on the first page read) | unknown
    shutdown: dt.date | None
    checked: float  # the last attempt (epoch seconds)
    listed: float | None  # the last good read
    error: str | None  # of the last attempt, if it failed

    def effective(self, today: dt.date) -> dt.date | None:
        """The shutdown date this report sets: today once the model is gone."""
        if self.state == "gone":
            return today if self.shutdown is None else min(today, self.shutdown)
        return self.shutdown

    def to_dict(self) -> dict[str, Any]:
        return {
            "upstream": self.upstream,
            "upstream_model": self.upstream_model,
            "state": self.state,
            "shutdown": None if self.shutdown is None else self.shutdown.isoformat(),
            "checked": iso_utc(self.checked),
            "listed": iso_utc(self.listed),
            "error": self.error,
        }


def proxied(settings: Settings, name: str | None) -> Proxied | None:
    """The catalog model ``name`` if an ``openai`` engine serves it (a closed API or any
    OpenAI-compatible server), else None."""
    entry = settings.model(name) if name else None
    if entry is None:
        return None
    for engine, params in entry.replica_specs():
        if engine == "openai":
            try:
                client = OpenAIEngine.from_config(entry.name, params)
            except ConfigError:  # serving it fails with this error; the watch has no upstream
                return None
            if not client.watch_lifecycle:
                return None
            return Proxied(entry.name, params, client.base_url, client.listed_as)
    return None


def watched_models(settings: Settings, loops: Iterable[LoopConfig]) -> list[Proxied]:
    """The proxied models the loops distil (teacher or ``capture_model``) or that
    ``[deprecations]`` names, once each."""
    names = [n for loop in loops for n in (loop.teacher, loop.capture_model)]
    seen: dict[str, Proxied] = {}
    for name in [*names, *settings.deprecations]:
        model = proxied(settings, name)
        if model is not None:
            seen.setdefault(model.model, model)
    return list(seen.values())


def _row(row: UpstreamModel) -> UpstreamReport:
    return UpstreamReport(row.model, row.upstream, row.upstream_model, row.state, row.shutdown,
                          row.checked, row.listed, row.error)  # fmt: skip


def reports(store: Store, names: Iterable[str]) -> dict[str, UpstreamReport]:
    """The recorded reports of these catalog models (those ever checked)."""
    wanted = list(set(names))
    with store.session() as s:
        rows = s.scalars(select(UpstreamModel).where(UpstreamModel.model.in_(wanted))).all()
        return {row.model: _row(row) for row in rows}


def report(store: Store, settings: Settings, name: str) -> UpstreamReport | None:
    """The recorded report of catalog model ``name``, while it still describes how the
    catalog serves it (a report about another upstream or upstream name is stale)."""
    model = proxied(settings, name)
    found = reports(store, [name]).get(name) if model is not None else None
    if model is None or found is None or not _current(found, model):
        return None
    return found


def _current(found: UpstreamReport, model: Proxied) -> bool:
    return (found.upstream, found.upstream_model) == (model.upstream, model.upstream_model)


def _is_due(found: UpstreamReport | None, model: Proxied, now: float) -> bool:
    if found is None or not _current(found, model):
        return True
    wait = RETRY_AFTER if found.error else CHECK_EVERY
    return now - found.checked >= wait


@dataclass(frozen=True)
class _Listing:
    entries: dict[str, Any]  # by id
    complete: bool  # False: the upstream pages its list and this is its first page


async def _read(models: list[Proxied], time_limit: float) -> _Listing | str:
    """One upstream's list, or the error that stopped its reading."""
    engine = models[0].engine()
    try:
        entries, complete = await engine.list_models(time_limit)
    except Exception as exc:  # whatever it is, the watch must not stop the scheduler
        return f"{type(exc).__name__}: {exc}"
    finally:
        await engine.close()
    by_id = {str(e.get("id")): e for e in entries if e.get("id") is not None}
    return _Listing(by_id, complete)


async def _read_all(groups: list[list[Proxied]], time_limit: float) -> list[_Listing | str]:
    return list(await asyncio.gather(*(_read(g, time_limit) for g in groups)))


def _record(store: Store, model: Proxied, listing: _Listing | str, now: float, known: bool) -> None:
    """Write what ``listing`` says of ``model``; ``known``: its row holds a good answer
    about the same upstream, which a failed read leaves standing."""
    key = {"model": model.model}
    where = {"upstream": model.upstream, "upstream_model": model.upstream_model, "checked": now}
    if isinstance(listing, str):
        log.warning("deprecation watch: cannot read the models list of %s (for %s): %s",
                    model.upstream, model.model, listing)  # fmt: skip
        fresh = {**where, "error": listing, "state": "unknown", "shutdown": None, "listed": None}
        values: dict[str, Any] = {**where, "error": listing} if known else fresh
    else:
        entry = listing.entries.get(model.upstream_model)
        if entry is None:
            # Only a whole list says a model is gone; a first page says nothing of the rest.
            state, shutdown = ("gone" if listing.complete else "unlisted"), None
        else:
            life = lifecycle(entry)
            state, shutdown = ("deprecated" if life.deprecated else "listed"), life.shutdown
        values = {**where, "state": state, "shutdown": shutdown, "listed": now, "error": None}
        fresh = values
    with store.session() as s:
        insert = dialect_insert(s, UpstreamModel).values(**key, **fresh)
        s.execute(insert.on_conflict_do_update(index_elements=["model"], set_=values))


def refresh(
    store: Store,
    settings: Settings,
    loops: Iterable[LoopConfig],
    now: float,
    *,
    force: bool = False,
    time_limit: float = TIME_LIMIT,
) -> list[UpstreamReport]:
    """Read the models lists of the watched models that are due (all with ``force``), one
    request per upstream, and record what they say; returns the reports written. An
    upstream that cannot be read is recorded as such, never raised."""
    models = watched_models(settings, loops)
    known = reports(store, [m.model for m in models])
    due = [m for m in models if force or _is_due(known.get(m.model), m, now)]
    groups: dict[str, list[Proxied]] = {}
    for model in due:
        groups.setdefault(model.group, []).append(model)
    listings = asyncio.run(_read_all(list(groups.values()), time_limit)) if groups else []
    for group, listing in zip(groups.values(), listings, strict=True):
        for model in group:
            found = known.get(model.model)
            _record(store, model, listing, now, found is not None and _current(found, model))
    return list(reports(store, [m.model for m in due]).values())


def effective_date(
    configured: dt.date | None, reported: UpstreamReport | None, today: dt.date
) -> dt.date | None:
    """The shutdown date in force: the earlier of the configured and the reported one."""
    upstream = reported.effective(today) if reported is not None else None
    dates = [d for d in (configured, upstream) if d is not None]
    return min(dates) if dates else None


def watch_rows(
    store: Store, settings: Settings, loops: Iterable[LoopConfig], now: float
) -> list[dict[str, Any]]:
    """Every watched model (configured in ``[deprecations]`` or distilled by a loop
    through an upstream): both dates, what its upstream said and when, the date in force."""
    today = dt.datetime.fromtimestamp(now, dt.UTC).date()
    watched = {m.model for m in watched_models(settings, loops)}
    rows = []
    for name in sorted(watched | set(settings.deprecations)):
        configured = settings.deprecations.get(name)
        reported = report(store, settings, name)
        date = effective_date(configured, reported, today)
        rows.append({
            "model": name,
            "proxied": name in watched,  # only a proxied model has an upstream to ask
            "configured": None if configured is None else configured.isoformat(),
            "upstream": None if reported is None else reported.to_dict(),
            "effective": None if date is None else date.isoformat(),
            "days_left": None if date is None else (date - today).days,
        })  # fmt: skip
    return rows
