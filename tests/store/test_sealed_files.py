"""Files of the Files API and a batch's answers are sealed at rest like captures (issue
19, item 4): the text is not on disk, it reads back, it survives a master key rotation,
and erasing the tenant shreds every copy. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from openclone.errors import EncryptionError
from openclone.store import Store, open_store
from openclone.store.batches import (
    claim_batch,
    create_batch,
    finish_batch,
    get_batch,
    record_results,
)
from openclone.store.crypto import Keyring, LocalMasterKey
from openclone.store.encryption import rotate_master
from openclone.store.files import file_content, get_file, save_file
from openclone.store.privacy import erase
from openclone.store.sealed import open_file
from openclone.store.tables import BatchResult, StoredFile
from store.helpers import ANA

MARKER = "ZQX-sealed-file-canary-7781"
ANSWER = "ZQX-sealed-answer-canary-3302"


def _sealing(master: LocalMasterKey | None = None) -> Keyring:
    return Keyring(master or LocalMasterKey(os.urandom(32)), encrypt=True, source="a test key")


def _holding(files: list[Path], text: str) -> list[Path]:
    return [f for f in files if text.encode() in f.read_bytes()]


def _raw(store: Store, file_id: str) -> tuple[str, bytes]:
    with store.session() as s:
        row = s.get(StoredFile, file_id)
        assert row is not None
        return row.tenant_id, bytes(row.content)


def test_files_and_batch_answers_are_sealed_and_read_back(
    store: Store, store_url: str, database_files: Callable[[], list[Path]]
) -> None:
    old = LocalMasterKey(os.urandom(32))
    store.keyring = _sealing(old)
    request = {"custom_id": MARKER, "method": "POST", "url": "/v1/embeddings",
               "body": {"input": f"company prompt {MARKER}"}}  # fmt: skip
    data = json.dumps(request).encode() + b"\n"
    up = save_file(store, "acme", "batch", "requests.jsonl", data, user="ana")
    batch = create_batch(store, ANA, "/v1/embeddings", up.id, "24h")
    assert claim_batch(store, batch["id"], "gw")
    record_results(store, batch["id"], "gw", [(1, True, {"answer": ANSWER}, 1, 1)])

    # While the batch runs, its answer waits sealed; so is the uploaded file.
    with store.session() as s:
        assert ANSWER not in str(s.scalar(select(BatchResult.body)))
    assert file_content(store, "acme", up.id) == data
    assert get_file(store, "acme", up.id).size == len(data)
    tenant_id, raw = _raw(store, up.id)
    assert MARKER.encode() not in raw
    assert not _holding(database_files(), MARKER) and not _holding(database_files(), ANSWER)

    assert finish_batch(store, batch["id"], "completed", owner="gw")
    out_id = get_batch(store, "acme", batch["id"])["output_file_id"]
    assert json.loads(file_content(store, "acme", out_id)) == {"answer": ANSWER}
    assert ANSWER.encode() not in _raw(store, out_id)[1]
    assert not _holding(database_files(), ANSWER)

    # `openclone keys rotate-master`: the files stay readable, in a fresh process too.
    new = LocalMasterKey(os.urandom(32))
    rotate_master(store, new, source="the new key", actor="admin")
    reopened = open_store(store_url, keyring=_sealing(new))
    try:
        assert file_content(reopened, "acme", up.id) == data
        assert json.loads(file_content(reopened, "acme", out_id)) == {"answer": ANSWER}
    finally:
        reopened.close()

    # Erasing the tenant shreds its key: a copy of the row made before does not open.
    erase(store, actor="admin", tenant="acme")
    with store.session() as s, pytest.raises(EncryptionError, match="no data key"):
        open_file(s, tenant_id, up.id, raw)


def test_a_sealed_file_does_not_open_as_another_file(store: Store) -> None:
    store.keyring = _sealing()
    a = save_file(store, "acme", "fine-tune", "a.jsonl", b'{"a": 1}\n')
    b = save_file(store, "acme", "fine-tune", "b.jsonl", b'{"b": 2}\n')
    tenant_id, raw_a = _raw(store, a.id)
    with store.session() as s, pytest.raises(EncryptionError, match="another row"):
        open_file(s, tenant_id, b.id, raw_a)


def test_bytes_that_look_sealed_round_trip_with_encryption_on_or_off(store: Store) -> None:
    for keys in (Keyring(), _sealing()):
        store.keyring = keys
        for data in (b"\x01oc1:not sealed", b"\x01oc0:x", b"", b"plain\n"):
            f = save_file(store, "acme", "batch_output", "x.jsonl", data)
            assert file_content(store, "acme", f.id) == data
