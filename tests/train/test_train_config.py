"""TrainConfig: documented fields, checked values, TOML, size-aware defaults."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from openclone.errors import ConfigError
from openclone.train.config import TrainConfig


def test_defaults_name_the_run_and_place_it_in_home(tmp_path: Path) -> None:
    cfg = TrainConfig(dataset=tmp_path / "support chats.jsonl")
    assert cfg.run_name.startswith("support-chats-")
    assert cfg.base_name == "smollm2-135m-instruct"
    assert cfg.run_dir == tmp_path / "openclone-home" / "models" / cfg.run_name
    assert cfg.adapter_dir == cfg.run_dir / "adapter"
    gguf = TrainConfig(dataset=tmp_path / "d.jsonl", base="/models/Qwen2-0.5B.Q8_0.gguf")
    assert gguf.base_name == "Qwen2-0.5B.Q8_0"


def test_home_from_openclone_toml_is_the_default_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENCLONE_HOME")
    (tmp_path / "openclone.toml").write_text(f'home = "{(tmp_path / "h").as_posix()}"\n')
    monkeypatch.chdir(tmp_path)
    cfg = TrainConfig(dataset=tmp_path / "d.jsonl", name="x")
    assert cfg.run_dir == tmp_path / "h" / "models" / "x"
    monkeypatch.setenv("OPENCLONE_HOME", str(tmp_path / "env"))  # the environment wins
    assert TrainConfig(dataset=tmp_path / "d.jsonl", name="x").run_dir.parent.parent == (
        tmp_path / "env"
    )


def test_every_field_is_documented() -> None:
    source = Path(TrainConfig.__module__.replace(".", "/") + ".py")
    text = (Path(__file__).parents[2] / "src" / source).read_text()
    for f in dataclasses.fields(TrainConfig):
        block = text.split(f"\n    {f.name}:", 1)[1].split("\n", 2)
        assert block[1].strip().startswith('"""'), f"{f.name} has no docstring"


def test_bad_values_are_all_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig(dataset=tmp_path / "d.jsonl", eval_fraction=1.5, lora_r=0, lr_scheduler="x")
    text = str(info.value)
    assert "eval_fraction" in text and "lora_r" in text and "lr_scheduler" in text


def test_toml_with_relative_paths_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "cfgs").mkdir()
    toml = tmp_path / "cfgs" / "train.toml"
    toml.write_text('[train]\ndataset = "../data.jsonl"\nlora_r = 32\nmax_steps = 100\n')
    cfg = TrainConfig.from_toml(toml, max_steps=5, learning_rate=None)
    assert cfg.dataset == tmp_path / "cfgs" / ".." / "data.jsonl"
    assert (cfg.lora_r, cfg.max_steps) == (32, 5)
    toml.write_text('dataset = "d.jsonl"\nlora_rank = 4\n')
    with pytest.raises(ConfigError, match=r"unknown training option.*lora_rank"):
        TrainConfig.from_toml(toml)
    with pytest.raises(ConfigError, match="not found"):
        TrainConfig.from_toml(tmp_path / "missing.toml")


def test_round_trip_through_dict(tmp_path: Path) -> None:
    cfg = TrainConfig(dataset=tmp_path / "d.jsonl", name="x", lora_r=4)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_auto_values_follow_model_size_and_device(tmp_path: Path) -> None:
    cfg = TrainConfig(dataset=tmp_path / "d.jsonl")
    tiny = cfg.resolved(num_params=135_000_000, device="cpu", max_positions=8192)
    assert (tiny.lora_r, tiny.lora_alpha, tiny.learning_rate) == (8, 16, 1e-3)
    assert (tiny.max_length, tiny.batch_size, tiny.gradient_checkpointing) == (512, 2, False)
    assert tiny.packing is True
    big = cfg.resolved(num_params=8_000_000_000, device="cuda", max_positions=131072)
    assert (big.lora_r, big.learning_rate, big.max_length) == (16, 2e-4, 2048)
    assert big.gradient_checkpointing is True and big.batch_size == 4
    short = cfg.resolved(num_params=10**9, device="cuda", max_positions=1024)
    assert short.max_length == 1024
    mine = dataclasses.replace(cfg, lora_r=64, learning_rate=5e-5, packing=False)
    kept = mine.resolved(num_params=10**9, device="cuda", max_positions=None)
    assert (kept.lora_r, kept.learning_rate, kept.packing) == (64, 5e-5, False)
