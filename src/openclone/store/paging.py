"""Keyset paging over ``(created, id)``: the order every OpenAI-style list pages in.

``created`` alone ties (OpenAI's timestamps are whole seconds, and two rows can share a
float), so the row's id breaks the tie; a cursor is the last row a client was given.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, or_
from sqlalchemy.sql.elements import ColumnElement, UnaryExpression

__all__ = ["beyond", "listing_order"]


def listing_order(created: Any, tie: Any, newest: bool) -> tuple[UnaryExpression[Any], ...]:
    """``ORDER BY`` for the listing: newest first, or oldest first."""
    return (created.desc(), tie.desc()) if newest else (created.asc(), tie.asc())


def beyond(
    created: Any, tie: Any, at_created: float, at_tie: str, newest: bool
) -> ColumnElement[bool]:
    """The rows that come after the row at ``(at_created, at_tie)`` in that order."""
    if newest:
        return or_(created < at_created, and_(created == at_created, tie < at_tie))
    return or_(created > at_created, and_(created == at_created, tie > at_tie))
