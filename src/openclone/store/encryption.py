"""The master key's life: what the store's encryption is now, and rotating the master key.

Rotation re-wraps each tenant's data key under the new master key in one transaction. No
sealed row is rewritten: rows are sealed with the data keys, which do not change. A backup
of the database taken before the rotation holds the keys wrapped by the old master key, so
destroying the old key after a rotation is what makes such backups unreadable — including
the rows of tenants erased since the backup was taken (see docs/encryption.md).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from openclone.errors import ConfigError
from openclone.store.audit import audit
from openclone.store.crypto import (
    HOME_KEY_FILE,
    MasterKey,
    create_master_key_file,
    data_key_context,
    master_key_id,
)
from openclone.store.db import Store
from openclone.store.tables import EncryptionKey, now

__all__ = [
    "EncryptionStatus",
    "Rotation",
    "encryption_status",
    "rotate_home_master",
    "rotate_master",
]

log = logging.getLogger("openclone.store")


@dataclass(frozen=True)
class EncryptionStatus:
    sealing: bool  # new text is sealed
    master_id: str | None  # the configured master key, by id (never the key)
    source: str  # where it came from
    data_keys: dict[str, int]  # tenants' data keys, by the master key that wrapped them


def encryption_status(store: Store) -> EncryptionStatus:
    k = store.keyring
    with store.session() as s:
        q = select(EncryptionKey.master_id, func.count()).group_by(EncryptionKey.master_id)
        keys = {str(m): int(n) for m, n in s.execute(q).all()}
    return EncryptionStatus(k.encrypt, k.master_id, k.source if k.master else "", keys)


@dataclass(frozen=True)
class Rotation:
    keys: int  # tenants' data keys re-wrapped
    old: str  # master key ids
    new: str


def rotate_master(store: Store, new: MasterKey, *, source: str, actor: str) -> Rotation:
    """Re-wrap every tenant's data key under ``new`` (audited); the store's keyring goes on
    with ``new``. Each re-wrapped key is unwrapped again before the commit, so a KMS hook
    that wraps what it cannot unwrap fails here instead of shredding every tenant."""
    keyring = store.keyring
    if keyring.master is None or keyring.master_id is None:
        raise ConfigError("this store has no master key to rotate from (encryption is off)")
    old, new_id = keyring.master_id, master_key_id(new)
    if new_id == old and new_id != "kms":
        raise ConfigError(f"the new master key is the one in use ({old})")
    with store.session() as s:
        rows = list(s.scalars(select(EncryptionKey).with_for_update()))
        for row in rows:
            raw = keyring.unwrap(row.tenant_id, row.wrapped, row.master_id)
            context = data_key_context(row.tenant_id)
            wrapped = new.wrap(raw, context)
            if new.unwrap(wrapped, context) != raw:
                raise ConfigError(f"the new master key ({source}) does not unwrap what it wraps")
            row.wrapped, row.master_id, row.rotated = wrapped, new_id, now()
        audit(s, actor, "keys.rotate_master", keys=len(rows), old=old, new=new_id)
    keyring.use_master(new, source)
    return Rotation(len(rows), old, new_id)


def rotate_home_master(store: Store, home: Path, *, actor: str) -> Rotation:
    """Rotate a store whose master key is the home's own ``master.key``: a new random key
    takes its place. The new key is written (``master.key.new``) before the database
    changes and moved over the old one after it commits; a crash in between leaves both
    files, and the store opens with whichever wrapped its keys (move ``.new`` over)."""
    current = home / HOME_KEY_FILE
    if store.keyring.source != str(current):
        raise ConfigError(
            f"the master key in use comes from {store.keyring.source}, not {current}: name "
            "the new one (--new-key-file, --new-key-env or --new-kms)"
        )
    staged = current.with_name(HOME_KEY_FILE + ".new")
    if staged.exists():
        raise ConfigError(
            f"{staged} exists (an interrupted rotation?): if the store opens with it, move it "
            f"over {current}; otherwise delete it, then rotate again"
        )
    new = create_master_key_file(staged)
    try:
        rotation = rotate_master(store, new, source=str(current), actor=actor)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    os.replace(staged, current)  # the old key is gone with this
    return rotation
