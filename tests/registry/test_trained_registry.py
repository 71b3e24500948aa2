"""Training runs in the one registry: registered once, aliased under their own name, added
as candidates to the models they are meant to replace."""

from __future__ import annotations

from pathlib import Path

from openclone.registry.trained import adopt_trained, register_run
from openclone.registry.versions import get_version, list_versions
from openclone.store import open_store
from openclone.store.trained import TrainedModel, save_record


def _run(home: Path, name: str, created: str) -> TrainedModel:
    record = TrainedModel(
        name=name, base="smollm2-135m-instruct", base_path="/models/base.gguf",
        adapter_path=f"/runs/{name}/adapter", dataset="teach.jsonl",
        dataset_sha256="ab" * 32, config={"lora_r": 8}, metrics={"train_loss": 1.5},
        created=created,
    )  # fmt: skip
    save_record(record, home)
    return record


def test_a_finished_run_is_served_by_its_name_and_joins_the_model_it_should_replace(
    tmp_path: Path,
) -> None:
    store = open_store(home=tmp_path)
    try:
        _run(tmp_path, "support-0601", "2026-06-01T00:00:00")
        first = register_run(store, "support-0601", "support", home=tmp_path)
        assert [v.pinned for v in first] == ["support-0601@1", "support@1"]
        # The run's own name serves the run at once; "support" waits for a promotion.
        assert get_version(store, "support-0601").target == "smollm2-135m-instruct:support-0601"
        assert not list_versions(store, "support")[0].aliased
        assert first[1].lineage["dataset_sha256"] == "ab" * 32
        assert first[1].lineage["run"] == "support-0601"

        # A resumed run that finishes again registers nothing new.
        again = register_run(store, "support-0601", "support", home=tmp_path)
        assert [v.pinned for v in again] == ["support-0601@1", "support@1"]

        _run(tmp_path, "support-0701", "2026-07-01T00:00:00")
        assert register_run(store, "support-0701", "support", home=tmp_path)[1].pinned == (
            "support@2"
        )
    finally:
        store.close()


def test_adoption_registers_old_runs_once_in_training_order(tmp_path: Path) -> None:
    store = open_store(home=tmp_path)
    try:
        _run(tmp_path, "later", "2026-07-01T00:00:00")
        _run(tmp_path, "earlier", "2026-06-01T00:00:00")
        assert [v.pinned for v in adopt_trained(store, tmp_path)] == ["earlier@1", "later@1"]
        assert adopt_trained(store, tmp_path) == []
        assert get_version(store, "later").aliased
    finally:
        store.close()
