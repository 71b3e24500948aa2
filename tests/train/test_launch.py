"""Several processes (accelerate launch, torchrun): where each loads the base, 4-bit or not,
the run name they must agree on, and a stop they decide together."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import free_port
from typer.testing import CliRunner

from openclone.cli import app
from openclone.errors import ConfigError
from openclone.train.config import TrainConfig
from openclone.train.distributed import Launch, Placement, any_process, placement
from train.train_helpers import write_teaching_set

DDP = {"WORLD_SIZE": "4", "RANK": "6", "LOCAL_RANK": "2"}
FSDP = {**DDP, "ACCELERATE_USE_FSDP": "true", "FSDP_CPU_RAM_EFFICIENT_LOADING": "true"}
ZERO3 = {**DDP, "ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}
ZERO2 = {**DDP, "ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"}


def place(
    env: dict[str, str],
    want_4bit: bool | None = None,
    *,
    device: str = "cuda",
    bnb: bool = True,
    gguf: bool = False,
) -> Placement:
    return placement(device, want_4bit, bnb=bnb, gguf=gguf, launch=Launch.from_env(env))


def test_launch_is_read_from_the_launchers_environment(tmp_path: Path) -> None:
    assert Launch.from_env({}) == Launch(1, 0, 0, "single")
    assert Launch.from_env(DDP) == Launch(4, 6, 2, "ddp")
    assert Launch.from_env(FSDP).strategy == "fsdp"
    assert Launch.from_env(ZERO3).strategy == "zero3"
    assert Launch.from_env(ZERO2).strategy == "ddp"  # a whole model per GPU
    ds = tmp_path / "ds.json"
    ds.write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    from_file = {**ZERO2, "ACCELERATE_DEEPSPEED_CONFIG_FILE": str(ds)}
    assert Launch.from_env(from_file).strategy == "zero3"  # the JSON wins, as in accelerate
    assert Launch.from_env({"WORLD_SIZE": "x"}).world_size == 1


def test_one_process_places_as_before() -> None:
    assert place({}, device="cpu") == Placement(False)
    assert place({}, bnb=False) == Placement(False, move_to="cuda")
    assert place({}, gguf=True) == Placement(False, move_to="cuda")  # GGUF is never 4-bit
    assert place({}) == Placement(True, device_map={"": 0})  # QLoRA by default on one GPU
    assert place({}, False) == Placement(False, move_to="cuda")


def test_data_parallel_loads_on_each_process_own_gpu() -> None:
    assert place(DDP, False) == Placement(False, move_to="cuda:2")
    assert place(DDP, bnb=False) == Placement(False, move_to="cuda:2")
    assert place(DDP) == Placement(True, device_map={"": 2})  # not GPU 0 for every rank
    assert place(ZERO2, False) == Placement(False, move_to="cuda:2")


@pytest.mark.parametrize("env", [FSDP, ZERO3], ids=["fsdp", "zero3"])
def test_sharded_runs_leave_placement_to_the_trainer(env: dict[str, str]) -> None:
    assert place(env) == Placement(False)  # auto 4-bit is off, nothing moved or mapped
    assert place(env, False) == Placement(False)
    assert place({**env, "WORLD_SIZE": "1", "LOCAL_RANK": "0"}) == Placement(False)
    # Asked for explicitly: the FSDP/ZeRO-3 QLoRA recipe, on this process's GPU.
    assert place(env, True) == Placement(True, device_map={"": 2}, quant_storage=True)


def test_4bit_that_cannot_work_is_refused() -> None:
    with pytest.raises(ConfigError, match="CUDA GPU and bitsandbytes"):
        place({}, True, device="cpu")
    with pytest.raises(ConfigError, match="CUDA GPU and bitsandbytes"):
        place(DDP, True, bnb=False)
    with pytest.raises(ConfigError, match="not a GGUF file"):
        place(FSDP, True, gguf=True)


def test_several_processes_need_a_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "chats.jsonl"
    assert TrainConfig(dataset=data).run_name.startswith("chats-")  # one process: a default
    monkeypatch.setenv("WORLD_SIZE", "8")
    with pytest.raises(ConfigError, match=r"name: required when 8 processes.*--name"):
        TrainConfig(dataset=data)
    assert TrainConfig(dataset=data, name="support-v2").run_dir.name == "support-v2"

    monkeypatch.setenv("TQDM_DISABLE", "1")
    result = CliRunner().invoke(app, ["train", "--dataset", str(data), "--max-steps", "1"])
    assert result.exit_code == 1
    assert "give --name" in " ".join(result.output.split())


def test_4bit_flag_reaches_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TQDM_DISABLE", "1")
    data = write_teaching_set(tmp_path / "d.jsonl", n=2)
    args = ["train", "--dataset", str(data), "--name", "q", "--device", "cpu", "--max-steps", "1"]
    result = CliRunner().invoke(app, [*args, "--4bit"])
    assert result.exit_code == 1
    assert "needs a CUDA GPU and bitsandbytes" in " ".join(result.output.split())


_AGREE = textwrap.dedent(
    """
    import sys
    import torch.distributed as dist
    from openclone.train.distributed import any_process

    rank, port, flags = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    print(",".join(str(any_process(f == "1", "cpu")) for f in flags.split(",")[rank]))
    dist.destroy_process_group()
    """
)


def test_a_stop_seen_by_one_process_stops_them_all(tmp_path: Path) -> None:
    assert any_process(True, "cpu") and not any_process(False, "cpu")  # no process group
    script = tmp_path / "agree.py"
    script.write_text(_AGREE)
    # Three decisions in a row; rank 0 sees the stop only in the third, rank 1 in the second.
    flags, port = "001,010", str(free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(rank), port, flags],
            stdout=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outs == ["False,True,True", "False,True,True"]
