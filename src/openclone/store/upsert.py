"""Writes that two gateways (or two erasures) may race on one unique row.

Two transactions that look for a row, find none and both insert it collide on the unique
index; on PostgreSQL the loser's whole transaction fails. ``dialect_insert`` lets the
database settle it in one ``ON CONFLICT`` statement; ``add_to_row`` adds to counters of a
row that may not exist yet.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

__all__ = ["add_to_row", "dialect_insert"]


def dialect_insert(s: Session, table: Any) -> postgresql.Insert | sqlite.Insert:
    """``insert(table)`` of the session's dialect, with ``on_conflict_do_*``."""
    if s.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def add_to_row(
    s: Session, model: Any, key: dict[str, Any], amounts: dict[str, float], **fixed: Any
) -> None:
    """Add ``amounts`` to the counters of ``model``'s row at ``key``, creating it (with
    ``fixed`` columns) if new; atomic against every other writer."""
    bump = (
        update(model)
        .where(*(getattr(model, k) == v for k, v in key.items()))
        .values({c: getattr(model, c) + v for c, v in amounts.items()})
    )
    if s.execute(bump).rowcount:  # type: ignore[attr-defined]
        return
    try:
        with s.begin_nested():  # another writer may insert the same row first
            s.add(model(**key, **fixed, **amounts))
            s.flush()
    except IntegrityError:
        s.execute(bump)  # it did: add to theirs (or the row's parent is gone: nothing to count)
