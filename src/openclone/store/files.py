"""Files of the Files API, scoped to their tenant, content and all in the store.

Another tenant's file is "not found", never listed, read or deleted. Keeping the bytes in
the row (not beside the database) means a file goes with its tenant's erasure through the
same delete and compaction as everything else, and gateways sharing PostgreSQL all see it.
The bytes are sealed with the tenant's data key, bound to the file id
(:func:`openclone.store.sealed.seal_file`): erasing the tenant shreds every copy, and a
file belongs to the person who uploaded it (or whose batch wrote it), erased with them.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from openclone.errors import APIError
from openclone.store.accounts import ensure_tenant, ensure_user, find_tenant
from openclone.store.db import Store
from openclone.store.paging import beyond, listing_order
from openclone.store.sealed import open_file, seal_file
from openclone.store.tables import StoredFile, now

__all__ = [
    "FileNotFound",
    "FileRecord",
    "add_file",
    "delete_file",
    "file_content",
    "get_file",
    "list_files",
    "new_file_id",
    "save_file",
]


class FileNotFound(APIError):
    status_code = 404
    error_type = "invalid_request_error"

    def __init__(self, file_id: str, param: str | None = None) -> None:
        super().__init__(f"No such File object: {file_id}", param=param or "file_id")


@dataclass(frozen=True)
class FileRecord:
    id: str
    purpose: str
    filename: str
    size: int
    sha256: str
    rows: int
    created: float
    expires_at: float | None = None

    def to_openai(self) -> dict[str, Any]:
        """The ``file`` object as OpenAI returns it."""
        return {
            "id": self.id, "object": "file", "bytes": self.size, "created_at": int(self.created),
            "filename": self.filename, "purpose": self.purpose, "status": "processed",
            "expires_at": int(self.expires_at) if self.expires_at else None,
            "status_details": None,
        }  # fmt: skip


def new_file_id() -> str:
    return "file-" + secrets.token_hex(12)


def _record(row: StoredFile) -> FileRecord:
    return FileRecord(
        row.id, row.purpose, row.filename, row.size, row.sha256, row.rows, row.created,
        row.expires_at,
    )  # fmt: skip


def save_file(
    store: Store,
    tenant: str,
    purpose: str,
    filename: str,
    data: bytes,
    *,
    rows: int = 0,
    expires_at: float | None = None,
    file_id: str | None = None,
    user: str | None = None,
) -> FileRecord:
    """Keep ``data`` as a new file of ``tenant`` (and of its person ``user``, if named),
    checked by the caller for its purpose."""
    with store.session() as s:
        t = ensure_tenant(s, tenant)
        user_id = ensure_user(s, t, user).id if user else None
        row = add_file(s, t.id, user_id, purpose, filename, data, rows=rows,
                       expires_at=expires_at, file_id=file_id)  # fmt: skip
    return _record(row)


def add_file(
    s: Session,
    tenant_id: str,
    user_id: str | None,
    purpose: str,
    filename: str,
    data: bytes,
    *,
    rows: int = 0,
    expires_at: float | None = None,
    file_id: str | None = None,
) -> StoredFile:
    """:func:`save_file` inside an open transaction, for a tenant known to exist (a
    batch's output is written with the batch's own row, so nothing re-creates a tenant
    erased meanwhile)."""
    fid = file_id or new_file_id()
    row = StoredFile(
        id=fid, tenant_id=tenant_id, user_id=user_id, purpose=purpose, filename=filename[:512],
        size=len(data), sha256=hashlib.sha256(data).hexdigest(), rows=rows,
        content=seal_file(s, tenant_id, fid, data), created=now(), expires_at=expires_at,
    )  # fmt: skip
    s.add(row)
    return row


def list_files(
    store: Store,
    tenant: str,
    *,
    purpose: str | None = None,
    after: str | None = None,
    limit: int = 10_000,
    order: str = "desc",
) -> tuple[list[FileRecord], bool]:
    """A page of the tenant's files, newest first (or oldest with ``order="asc"``), starting
    after the file ``after``; and whether more follow."""
    with store.session() as s:
        t = find_tenant(s, tenant)
        if t is None:
            return [], False
        # An expired file (``expires_after`` at upload) goes when its tenant next lists.
        s.execute(
            delete(StoredFile).where(StoredFile.tenant_id == t.id, StoredFile.expires_at < now())
        )
        q = select(StoredFile).where(StoredFile.tenant_id == t.id)
        if purpose:
            q = q.where(StoredFile.purpose == purpose)
        newest = order != "asc"
        if after:
            cursor = s.get(StoredFile, after)
            if cursor is None or cursor.tenant_id != t.id:
                return [], False
            q = q.where(
                beyond(StoredFile.created, StoredFile.id, cursor.created, cursor.id, newest)
            )
        q = q.order_by(*listing_order(StoredFile.created, StoredFile.id, newest)).limit(limit + 1)
        rows = list(s.scalars(q))
    return [_record(r) for r in rows[:limit]], len(rows) > limit


def get_file(store: Store, tenant: str, file_id: str, param: str | None = None) -> FileRecord:
    """The tenant's file ``file_id``; :class:`FileNotFound` otherwise."""
    with store.session() as s:
        return _record(_owned(s, tenant, file_id, param))


def file_content(store: Store, tenant: str, file_id: str, param: str | None = None) -> bytes:
    """The file's bytes as they were uploaded (or written)."""
    with store.session() as s:
        row = _owned(s, tenant, file_id, param)
        return open_file(s, row.tenant_id, row.id, bytes(row.content))


def delete_file(store: Store, tenant: str, file_id: str) -> None:
    with store.session() as s:
        _owned(s, tenant, file_id)
        s.execute(delete(StoredFile).where(StoredFile.id == file_id))


def _owned(s: Session, tenant: str, file_id: str, param: str | None = None) -> StoredFile:
    t = find_tenant(s, tenant)
    row = s.get(StoredFile, file_id) if t is not None else None
    if row is None or t is None or row.tenant_id != t.id:
        raise FileNotFound(file_id, param)
    if row.expires_at is not None and row.expires_at < now():
        raise FileNotFound(file_id, param)
    return row
