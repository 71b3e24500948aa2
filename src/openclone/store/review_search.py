"""Search over sealed review examples: a keyed fingerprint (a "blind index") per word.

The examples' text is sealed, so SQL cannot look into it. Each example instead keeps, in
the clear, the set of its distinct words each hashed with a key of its dataset (BLAKE2b,
48 bits, URL-safe base64: 8 characters), as `` fp1 fp2 … ``. A search for whole words is
then one ``LIKE '% fp %'`` per word over the dataset's rows: a scan of short text, which
stays in tens of milliseconds at 50K rows on SQLite and PostgreSQL alike, and needs no
decryption until the page itself is shown.

What it gives away: which rows share a word (not the word: the key is sealed with the
tenant's data key, and goes with it when the tenant is crypto-shredded). What it cannot
do: substrings and prefixes — a search matches whole words, case-insensitively.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from typing import Any

from sqlalchemy import and_
from sqlalchemy.sql.elements import ColumnElement

__all__ = ["fingerprints", "matches", "new_search_key", "words"]

_WORD = re.compile(r"\w+", re.UNICODE)
_MAX_QUERY_WORDS = 16


def words(text: str) -> list[str]:
    """The words a search matches: runs of letters, digits and ``_``, lower-cased."""
    return _WORD.findall(text.casefold())


def new_search_key() -> str:
    return base64.b64encode(os.urandom(32)).decode("ascii")


def _fingerprint(key: bytes, word: str) -> str:
    digest = hashlib.blake2b(word.encode("utf-8", "surrogatepass"), key=key, digest_size=6)
    return base64.urlsafe_b64encode(digest.digest()).decode("ascii")


def fingerprints(key: str, text: str) -> str:
    """What the ``words`` column holds for ``text``: its distinct words' fingerprints."""
    raw = base64.b64decode(key)
    found = {_fingerprint(raw, w) for w in words(text)}
    return " " + " ".join(sorted(found)) + " " if found else " "


def matches(column: Any, key: str, query: str) -> ColumnElement[bool] | None:
    """The rows whose text has every word of ``query`` (None: the query has no words)."""
    asked = list(dict.fromkeys(words(query)))[:_MAX_QUERY_WORDS]
    if not asked:
        return None
    raw = base64.b64decode(key)
    # base64url uses "_", which LIKE reads as a wildcard: escape it.
    return and_(
        *(
            column.like("% " + _fingerprint(raw, w).replace("_", "\\_") + " %", escape="\\")
            for w in asked
        )
    )
