"""ggml's AMX matmul faults on some Intel AMX CPUs (llama.cpp#20824): a SIGSEGV or SIGILL on
the first batched decode, which used to kill whatever process held the engine. The
llama.cpp engine keeps ggml's extra weight buffers off where the CPU and the build have AMX.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from openclone.engines.llamacpp import (
    LlamaCppConfig,
    LlamaCppEngine,
    cpu_has_amx,
    use_extra_buffers,
)

FLAGS = "flags\t\t: fpu vme avx2 avx512f avx512_vnni"


def test_amx_is_read_from_the_cpu_flags(tmp_path: Path) -> None:
    plain, amx = tmp_path / "plain", tmp_path / "amx"
    plain.write_text(f"processor\t: 0\n{FLAGS}\n")
    amx.write_text(f"processor\t: 0\n{FLAGS} amx_bf16 amx_tile amx_int8\n")
    assert not cpu_has_amx(str(plain))
    assert cpu_has_amx(str(amx))
    assert not cpu_has_amx(str(tmp_path / "missing"))


def test_extra_buffers_can_be_forced_either_way() -> None:
    assert use_extra_buffers("on") is True
    assert use_extra_buffers("off") is False


@pytest.mark.slow
def test_auto_turns_extra_buffers_off_exactly_on_amx_machines() -> None:
    from llama_cpp import llama_cpp

    build_has_amx = "AMX_INT8 = 1" in llama_cpp.llama_print_system_info().decode()

    async def describe() -> dict[str, object]:
        engine = LlamaCppEngine("m", LlamaCppConfig(n_ctx=256, n_parallel=1))
        try:
            return engine.describe()
        finally:
            await engine.close()

    detail = asyncio.run(describe())
    assert detail["extra_buffers"] is not (cpu_has_amx() and build_has_amx)


@pytest.mark.slow
def test_the_distill_run_that_crashed_on_amx_cpus_completes(tmp_path: Path) -> None:
    """The workload from the report, in process (isolation = "thread"): a fault in a ggml
    kernel would end this subprocess with SIGSEGV or SIGILL instead of exit 0 or 3."""
    config = tmp_path / "openclone.toml"
    config.write_text(
        '[[models]]\nname = "smollm2-135m-instruct"\n'
        'params = { n_ctx = 2048, n_parallel = 4, n_threads = 1, isolation = "thread" }\n'
    )
    args = ["distill", "--out", str(tmp_path / "tiny.jsonl"), "--config", str(config)]
    args += ["--max-tokens", "200", "--answer-max-tokens", "64", "--keep-truncated"]
    args += ["--max-rounds", "2", "--tasks-per-request", "4", "--concurrency", "4"]
    args += ["--random-seed", "5", "--count", "2"]
    done = subprocess.run(
        [sys.executable, "-m", "openclone", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode in (0, 3), (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    assert (tmp_path / "tiny.card.json").is_file()
