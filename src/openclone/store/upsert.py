"""An INSERT that can say ON CONFLICT, in the store's dialect (SQLite or PostgreSQL).

Two transactions that look for a row, find none and both insert it collide on the unique
index; on PostgreSQL the loser's whole transaction fails. ``ON CONFLICT`` lets the database
settle it in the one statement instead.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

__all__ = ["dialect_insert"]


def dialect_insert(s: Session, table: Any) -> postgresql.Insert | sqlite.Insert:
    """``insert(table)`` of the session's dialect, with ``on_conflict_do_*``."""
    if s.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
