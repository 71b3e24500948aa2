"""The store: tenants, keys, conversations, captures, feedback, erasures, exports, audit.

SQLAlchemy 2 over SQLite (a WAL file in ``OPENCLONE_HOME``) or PostgreSQL (by URL), with
Alembic migrations applied on open. The gateway writes captures through
:class:`~openclone.store.writer.CaptureWriter`; everything else is a function of
:class:`~openclone.store.db.Store`.
"""

from openclone.store.db import Store, open_store

__all__ = ["Store", "open_store"]
