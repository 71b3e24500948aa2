"""A tenant's erasure takes what the Files, fine-tuning and Batch APIs kept for it: files,
jobs and their events, batches, the copies of its training data on disk, its fine-tuned
models' directories and registry names; another tenant's stay. A person's erasure takes
their batches (queued, running or done) and the files they uploaded or their batches
wrote; another person's stay."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from openclone.registry.versions import list_versions, register, set_alias
from openclone.store import Store
from openclone.store.accounts import Principal
from openclone.store.batches import (
    BatchNotFound,
    claim_batch,
    create_batch,
    finish_batch,
    get_batch,
    record_results,
)
from openclone.store.files import FileNotFound, get_file, list_files, save_file
from openclone.store.fine_tuning import JobNotFound, get_job_row, insert_job
from openclone.store.lineage import erasures_since
from openclone.store.privacy import erase
from openclone.store.tables import FineTuningJob, now

MARKER = "ZQX-canary-5517-training-data"


def _holding(files: list[Path], text: str) -> list[Path]:
    return [f for f in files if text.encode() in f.read_bytes()]


def _job(store: Store, home: Path, tenant: str, training_file: str, short: str, text: str) -> Path:
    job_id = f"ftjob-{tenant}"
    data = home / "fine_tuning" / job_id
    data.mkdir(parents=True)
    (data / "train.jsonl").write_text(text)
    run = home / "models" / f"ft-{short}"
    (run / "adapter").mkdir(parents=True)
    row = FineTuningJob(
        id=job_id, model="base", training_file=training_file, seed=1, status="succeeded",
        ft_name=f"ft:base:{tenant}::{short}", run_name=f"ft-{short}", steps_seen=0,
        result_files=[], paths=[str(data), str(run)], hyperparameters={}, method={},
        created=now(),
    )  # fmt: skip
    insert_job(store, tenant, row, ["Created fine-tuning job"])
    for name in (row.ft_name, row.run_name):
        set_alias(store, name, register(store, name, f"base:ft-{short}").version)
    return data


def test_erasing_a_tenant_takes_its_files_jobs_and_batches(
    store: Store, home: Path, database_files: Callable[[], list[Path]]
) -> None:
    mine = save_file(store, "acme", "fine-tune", "t.jsonl", MARKER.encode())
    request = {"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {}}
    requests = save_file(store, "acme", "batch", "b.jsonl", json.dumps(request).encode())
    acme = Principal(tenant="acme", user="ana", key_id=None, scope="user")
    batch = create_batch(store, acme, "/v1/embeddings", requests.id, "24h")
    theirs = save_file(store, "globex", "fine-tune", "g.jsonl", b"kept")
    data = _job(store, home, "acme", mine.id, "aaaa1111", MARKER)
    kept = _job(store, home, "globex", theirs.id, "bbbb2222", "globex's own data")
    assert _holding(database_files(), MARKER)

    result = erase(store, actor="admin", tenant="acme")

    assert (result.counts["files"], result.counts["fine_tuning_jobs"]) == (2, 1)
    assert result.counts["batches"] == 1 and batch["id"]
    for file_id in (mine.id, requests.id):
        with pytest.raises(FileNotFound):
            get_file(store, "acme", file_id)
    with pytest.raises(JobNotFound):
        get_job_row(store, "acme", "ftjob-acme")
    assert not data.exists() and not (home / "models" / "ft-aaaa1111").exists()
    names = {v.name for v in list_versions(store)}
    assert names == {"ft:base:globex::bbbb2222", "ft-bbbb2222"}
    # Another tenant's work stays, on disk and in the store.
    assert kept.exists() and (home / "models" / "ft-bbbb2222" / "adapter").is_dir()
    assert [f.id for f in list_files(store, "globex")[0]] == [theirs.id]
    assert get_job_row(store, "globex", "ftjob-globex").ft_name == "ft:base:globex::bbbb2222"
    # The training data is gone from the database's files too (the store compacts).
    assert not _holding(database_files(), MARKER)


def test_erasing_a_person_takes_their_batches_and_files(
    store: Store, database_files: Callable[[], list[Path]]
) -> None:
    def batch_of(who: Principal, text: str) -> str:
        request = {"custom_id": text, "method": "POST", "url": "/v1/embeddings",
                   "body": {"input": text}}  # fmt: skip
        up = save_file(store, "acme", "batch", "b.jsonl", json.dumps(request).encode(),
                       user=who.user)  # fmt: skip
        return str(create_batch(store, who, "/v1/embeddings", up.id, "24h")["id"])

    ana = Principal(tenant="acme", user="ana", key_id=None, scope="user")
    bob = Principal(tenant="acme", user="bob", key_id=None, scope="user")
    done, queued = batch_of(ana, f"{MARKER} done"), batch_of(ana, f"{MARKER} queued")
    assert claim_batch(store, done, "gw")
    record_results(store, done, "gw", [(1, True, {"answer": f"{MARKER} answer"}, 1, 1)])
    assert finish_batch(store, done, "completed", owner="gw")
    training = save_file(store, "acme", "fine-tune", "t.jsonl", MARKER.encode(), user="ana")
    kept = batch_of(bob, "bob's own request")
    assert _holding(database_files(), MARKER)

    result = erase(store, actor="admin", tenant="acme", user="ana")

    # Both batches, their two input files, the output file and the training file.
    assert (result.counts["batches"], result.counts["files"]) == (2, 4)
    for batch_id in (done, queued):
        with pytest.raises(BatchNotFound):
            get_batch(store, "acme", batch_id)
    with pytest.raises(FileNotFound):
        get_file(store, "acme", training.id)
    assert get_batch(store, "acme", kept)["status"] == "validating"
    assert len(list_files(store, "acme")[0]) == 1  # bob's input file
    # `openclone audit erasures` lists what went.
    (record,) = erasures_since(store)
    assert (record.kind, record.counts["batches"], record.counts["files"]) == ("user", 2, 4)
    assert not _holding(database_files(), MARKER)
