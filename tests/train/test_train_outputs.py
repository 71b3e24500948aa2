"""What a run leaves behind: the base named in the record, the home it is recorded in, and one
writer of OpenClone's own files when several processes train together. Real (one- or two-step)
runs on the bundled model."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from openclone.cli import app
from openclone.config import bundled_model_path, load_settings
from openclone.registry.versions import list_versions
from openclone.store import open_store
from openclone.store.trained import get_trained, record_path
from openclone.train import sft
from train.train_helpers import fast_config, write_teaching_set

pytestmark = pytest.mark.slow

_TINY = {"max_steps": 1, "eval_fraction": 0.0, "max_length": 64, "lora_r": 4}


def test_base_from_train_toml_is_recorded_and_kept_on_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TQDM_DISABLE", "1")
    write_teaching_set(tmp_path / "teach.jsonl", n=2)
    gguf = bundled_model_path()  # a base given by path: it is named after its file
    toml = tmp_path / "train.toml"
    toml.write_text(
        f'[train]\ndataset = "teach.jsonl"\nbase = "{gguf}"\nbatch_size = 1\n'
        + "".join(f"{k} = {v}\n" for k, v in _TINY.items())
    )
    cli = CliRunner()
    first = cli.invoke(app, ["train", "--config", str(toml), "--name", "tb"])
    assert first.exit_code == 0, first.output
    base = gguf.name.removesuffix(".gguf")
    assert get_trained("tb").base == base and get_trained("tb").base_path == str(gguf)

    again = cli.invoke(app, ["train", "--resume", "--name", "tb", "--max-steps", "2"])
    assert again.exit_code == 0, again.output
    record = get_trained("tb")
    assert record.metrics["final_step"] == 2  # it did resume and train on
    assert record.base == base and record.served_as == f"{base}:tb"
    assert "tb@1" in again.output  # the resumed run is still the one version


def test_only_the_main_process_writes_config_report_and_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sft, "is_main_process", lambda: False)
    run = tmp_path / "run"
    cfg = fast_config(write_teaching_set(tmp_path / "teach.jsonl", n=2), run, **_TINY)
    result = sft.SFTRunner(cfg).run()
    assert not result.stopped and result.final_step == 1 and not result.main_process
    # The Trainer's own outputs are there (it writes them on its process zero) ...
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    # ... but none of OpenClone's: another process writes those.
    assert not (run / "train_config.json").exists() and not (run / "report").exists()
    record = record_path(cfg.run_name)
    assert not record.exists() and not record.with_suffix(".tmp").exists()
    assert result.metrics == {}


def test_home_set_only_in_openclone_toml_holds_the_record_the_server_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.delenv("OPENCLONE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))  # a stray ~/.openclone lands here
    home = tmp_path / "toml-home"
    (tmp_path / "openclone.toml").write_text(f'home = "{home.as_posix()}"\n')
    monkeypatch.chdir(tmp_path)
    write_teaching_set(tmp_path / "teach.jsonl", n=2)
    tiny = [f"--{k.replace('_', '-')}={v}" for k, v in {**_TINY, "batch_size": 1}.items()]
    result = CliRunner().invoke(app, ["train", "--dataset", "teach.jsonl", "--name", "th", *tiny])
    assert result.exit_code == 0, result.output
    run = home / "models" / "th"
    assert (run / "record.json").is_file() and (run / "adapter").is_dir()
    # The server finds trained models in its settings' home.
    record = get_trained("th", load_settings().home)
    assert record.adapter_path == str(run / "adapter")
    # ... and in its registry, under the run's name.
    assert "th@1" in result.output
    store = open_store(load_settings())
    try:
        assert [(v.pinned, v.aliased) for v in list_versions(store)] == [("th@1", True)]
    finally:
        store.close()
