"""The store: tenants, keys, conversations, captures, feedback, erasures, exports, audit.

SQLAlchemy 2 over SQLite (a WAL file in ``OPENCLONE_HOME``) or PostgreSQL (by URL), with
Alembic migrations applied on open. Every function takes the :class:`Store` first:

- ``db``: :func:`open_store`, ``migrate``/``downgrade``
- ``keys``: ``create_key``, ``list_keys``, ``revoke_key``, ``authenticate``, ``any_keys``
- ``accounts``: ``Principal``, consent (``set_tenant_policy``, ``set_user_consent``,
  ``user_consent``), ``list_tenants``
- ``writer``: ``CaptureWriter``, the gateway's capture sink
- ``conversations``: the chat UI's conversations, scoped to their owner
- ``privacy``: ``add_feedback``, ``erase``, ``apply_retention``, ``run_retention``
- ``export``: ``export_captures``, ``iter_captured_prompts``, ``list_captures``
- ``lineage``: ``erasures_since``, ``affected_exports``, ``affected_models``
- ``audit``: ``list_audit``
- ``admin``: what the admin API and CLI read: ``tenant_detail`` (with counts), ``list_users``
- encryption at rest: ``crypto`` (master keys, KMS hooks, the tenants' data keys: ``Keyring``),
  ``sealed`` (which columns are sealed; what the readers above open them with),
  ``encryption`` (``encryption_status``, ``rotate_master``)
"""

from openclone.store.db import Store, open_store

__all__ = ["Store", "open_store"]
