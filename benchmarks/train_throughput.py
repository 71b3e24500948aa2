"""LoRA training throughput and model-FLOPs utilisation: OpenClone's trainer against a plain
transformers + PEFT baseline, on the same model, examples, LoRA and batch, in one run.

    python benchmarks/train_throughput.py [DATA.jsonl] [--model bundled|PATH]
        [--random-config smollm2-135m|llama-1b|llama-8b] [--steps 20] [--warmup 2]
        [--batch-size 4] [--max-length 256] [--examples N] [--device cpu|cuda]
        [--liger | --no-liger] [--compile] [--peak-tflops X] [--out JSON]

Setups, in this order (the baseline first: Liger patches transformers' Llama classes for the
whole process, so anything run after it would inherit its kernels):

* baseline: HF ``Trainer`` + PEFT, each step ``--batch-size`` conversations padded to the
  longest of them (``DataCollatorForSeq2Seq``), no packing, SDPA attention, no fused kernels.
* openclone: ``SFTRunner`` with its defaults (padding-free BFD packing into ``--max-length``
  rows, TRL's chunked LM-head loss, flash-attention when installed), ``--batch-size`` taken
  as the packed rows that hold about the same conversations per step as the baseline's.
* openclone +liger/+compile (GPU, when asked or installed): the same with Liger's kernels
  and/or ``torch.compile``.

Both sides train one epoch over the same conversations (labels on assistant tokens only,
the same LoRA rank/alpha/targets, learning rate, precision and activation checkpointing);
the first ``--warmup`` optimizer steps are excluded from timing, and so is the checkpoint
written after the last step. Throughput counts non-padding tokens. Prints a table and an
Alpaca-sized job estimate; writes benchmarks/results/train_throughput.json. Not pass/fail.

DATA is a JSONL of real prompts (``{"instruction": ...}``, the default ShareGPT file): each
conversation is one real prompt as the user turn and the next real prompt's text as the
assistant turn, so lengths are those of real traffic. An OpenAI chat JSONL
(``{"messages": [...]}``) is used as it is.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import json
import math
import os
import platform
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Before transformers/TRL import: their per-item progress bars would bury the table.
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch
from _common import DEFAULT_DATA, RESULTS, load_prompts, pct
from rich.console import Console
from rich.table import Table
from transformers import TrainerCallback

ALPACA = {"examples": 52_000, "tokens_per_example": 270, "epochs": 3}

# Llama-architecture shapes for --random-config. Throughput depends on shapes, not on weight
# values, so random weights stand in for checkpoints no hub can deliver here. The RoPE
# scaling of Llama 3.1/3.2 is left out: it changes no FLOP count.
SHAPES: dict[str, dict[str, Any]] = {
    "smollm2-135m": {  # HuggingFaceTB/SmolLM2-135M-Instruct
        "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
        "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
        "head_dim": 64, "max_position_embeddings": 8192, "tie_word_embeddings": True,
    },
    "llama-1b": {  # meta-llama/Llama-3.2-1B
        "vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192,
        "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
        "head_dim": 64, "max_position_embeddings": 131072, "tie_word_embeddings": True,
    },
    "llama-8b": {  # meta-llama/Llama-3.1-8B
        "vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
        "head_dim": 128, "max_position_embeddings": 131072, "tie_word_embeddings": False,
    },
}  # fmt: skip

# Dense bf16 tensor-core peaks from the datasheets, used on GPU when --peak-tflops is not given.
GPU_PEAK_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.4, "H200": 989.4, "A100": 312.0}


# ---- timing ---------------------------------------------------------------------------------


class StepClock(TrainerCallback):
    """(step, seconds, tokens seen) at the end of every optimizer step.

    The Trainer saves its final checkpoint after ``on_step_end`` of the last step, and
    ``on_train_end`` comes later still, so timing between step ends keeps saving out.
    """

    def __init__(self) -> None:
        self.marks: list[tuple[int, float, int]] = []

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # CUDA kernels run ahead of Python; time finished work
        self.marks.append((state.global_step, time.perf_counter(), state.num_input_tokens_seen))


@dataclass
class Result:
    setup: str
    steps: int
    timed_steps: int
    rows_per_step: int  # conversations (baseline) or packed rows (openclone) per step
    timed_tokens: int
    timed_seconds: float
    total_tokens: int
    wall_seconds: float
    trainable_params: int
    peak_memory_gib: float | None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def batch(self) -> str:
        packed = self.settings.get("max_length") if self.settings.get("packing") else None
        return (
            f"{self.rows_per_step} x {packed} packed" if packed else f"{self.rows_per_step} padded"
        )

    @property
    def tokens_per_second(self) -> float:
        return self.timed_tokens / self.timed_seconds if self.timed_seconds > 0 else float("nan")


def timed(clock: StepClock, warmup: int) -> tuple[int, int, float]:
    """(timed steps, tokens, seconds) from the end of step ``warmup`` to the end of the last."""
    if len(clock.marks) <= warmup:
        raise SystemExit(
            f"only {len(clock.marks)} steps ran, not more than --warmup {warmup}: "
            "give more --steps or --examples"
        )
    _, t0, n0 = clock.marks[warmup - 1]
    _, t1, n1 = clock.marks[-1]
    return len(clock.marks) - warmup, n1 - n0, t1 - t0


def peak_memory_gib() -> float | None:
    if not torch.cuda.is_available():
        return None  # process RSS only ever grows; a per-setup CPU figure would mislead
    return round(torch.cuda.max_memory_allocated() / 2**30, 2)


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


# ---- FLOPs ----------------------------------------------------------------------------------

FLOPS_FORMULA = (
    "per token: 4*N_linear + 6*N_lora + attention. N_linear = weights of every nn.Linear of the "
    "frozen base, LM head included (embedding lookups are free). Forward is 2N; the backward "
    "of a frozen weight needs only the activation-gradient matmul (2N), not the weight-gradient "
    "one, so a frozen linear costs 4N, not 6N; the LoRA matrices are trained, so 6N_lora. "
    "Attention (no weights) per example of n tokens, causal, within the example only: forward "
    "2*L*H*D*n*(n+1) (QK^T and PV), backward twice that, so 6*L*H*D*n*(n+1) in all. Recomputation "
    "by activation checkpointing is not counted (model FLOPs, not hardware FLOPs)."
)


@dataclass(frozen=True)
class Flops:
    linear_params: int
    lora_params: int
    layers: int
    heads: int
    head_dim: int
    tokens: int  # all tokens of the examples (one epoch)
    attention: float  # training attention FLOPs of all examples

    @classmethod
    def of(cls, model: Any, lora_params: int, lengths: list[int]) -> Flops:
        cfg = model.config
        heads = cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        layers = cfg.num_hidden_layers
        linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
        attention = sum(6.0 * layers * heads * head_dim * n * (n + 1) for n in lengths)
        return cls(linear, lora_params, layers, heads, head_dim, sum(lengths), attention)

    @property
    def per_token(self) -> float:
        return 4.0 * self.linear_params + 6.0 * self.lora_params + self.attention / self.tokens


def matmul_flops(device: str) -> float:
    """Best observed matmul rate: fp32 2048^3 on CPU (what CPU training runs in), bf16 8192^3
    on GPU; the peak that CPU MFU is measured against, since no datasheet fits a shared box."""
    n, dtype = (8192, torch.bfloat16) if device == "cuda" else (2048, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = math.inf
    for i in range(13):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 3:  # the first calls pay for thread-pool and cuBLAS start-up
            best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


def pick_peak(device: str, override: float | None, measured: float) -> tuple[float, str]:
    threads = torch.get_num_threads()
    if override:
        return override * 1e12, "--peak-tflops"
    if device == "cuda":
        name = torch.cuda.get_device_name()
        for key, tflops in GPU_PEAK_TFLOPS.items():  # "H100 PCIe" is listed before "H100"
            if key in name:
                return tflops * 1e12, f"datasheet dense bf16 for {name}"
        return measured, f"measured bf16 8192^3 matmul on {name} (no datasheet entry)"
    return measured, f"measured fp32 2048^3 matmul, best of 10, {threads} threads, same run"


# ---- data -----------------------------------------------------------------------------------


def write_conversations(data: Path, n: int, out: Path) -> int:
    """Write ``n`` chat examples to ``out`` (OpenAI chat JSONL); return how many were written."""
    with data.open(encoding="utf-8") as f:
        first = json.loads(next(line for line in f if line.strip()))
    if "messages" in first:
        with data.open(encoding="utf-8") as f:
            lines = [line.strip() for line in f if line.strip()][:n]
    else:
        # 2,000 characters is where the ShareGPT file already cut its prompts.
        prompts = load_prompts(data, 2 * n, max_chars=2000)
        lines = [
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": prompts[i]},
                        {"role": "assistant", "content": prompts[i + 1]},
                    ]
                }
            )
            for i in range(0, len(prompts) - 1, 2)
        ]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


def packed_rows(rows: list[dict[str, list[int]]], max_length: int) -> int:
    """How many ``max_length`` rows TRL's BFD packing makes of ``rows`` (as SFTTrainer does)."""
    from datasets import Dataset
    from trl import pack_dataset

    return len(pack_dataset(Dataset.from_list(rows), max_length, "bfd"))


# ---- models ---------------------------------------------------------------------------------


class Bench:
    """What every setup shares: device, tokenizer, examples, and how to get a fresh base."""

    def __init__(self, args: argparse.Namespace, home: Path) -> None:
        from transformers import AutoTokenizer

        from openclone.train.data import read_chat_jsonl, tokenize_split
        from openclone.train.model import base_path

        self.args = args
        self.home = home
        self.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.base = None if args.model == "bundled" else args.model
        path = base_path(self.base)
        where: dict[str, Any] = {"pretrained_model_name_or_path": str(path)}
        if path.is_file():
            where = {"pretrained_model_name_or_path": str(path.parent), "gguf_file": path.name}
        self.base_path = path
        self.base_desc = (
            f"{args.random_config} shape, random weights" if args.random_config else path.name
        )
        self.tokenizer = AutoTokenizer.from_pretrained(**where)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.dataset = home / "conversations.jsonl"
        wanted = args.examples or args.batch_size * (args.warmup + args.steps)
        self.conversations = write_conversations(args.data, wanted, self.dataset)
        split = tokenize_split(self.tokenizer, read_chat_jsonl(self.dataset), args.max_length)
        self.rows = split.rows
        self.truncated = split.truncated
        self.lengths = [len(r["input_ids"]) for r in self.rows]
        self.baseline_steps = math.ceil(len(self.rows) / args.batch_size)
        self.packed = packed_rows(self.rows, args.max_length)
        # Packed rows per step that hold about as many conversations as a baseline step.
        self.rows_per_step = max(1, round(self.packed / self.baseline_steps))

    @property
    def dtype(self) -> torch.dtype:
        if self.device != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def load(self, attn: str) -> Any:
        """A fresh base model on the device: the real weights, or random ones of a shape."""
        if not self.args.random_config:
            from openclone.train.model import load_base

            return load_base(self.base, self.device, attn=attn)[0]
        from transformers import LlamaConfig, LlamaForCausalLM

        config = LlamaConfig(**SHAPES[self.args.random_config], rms_norm_eps=1e-5)
        config._attn_implementation = attn
        torch.manual_seed(self.args.seed)
        with torch.device(self.device):  # initialise in place: an 8B model never visits the CPU
            model = LlamaForCausalLM(config).to(self.dtype)
        return model

    @contextlib.contextmanager
    def base_for_runner(self) -> Iterator[None]:
        """Hand a random-weights model to ``SFTRunner``, which only loads bases from a path.

        Saving 16 GB of random 8B weights to disk just to read them back would take longer than
        the measurement; throughput does not depend on where the weights came from.
        """
        if not self.args.random_config:
            yield
            return
        from unittest import mock

        from transformers import LlamaConfig

        from openclone.train import sft

        shape = LlamaConfig(**SHAPES[self.args.random_config], rms_norm_eps=1e-5)

        def load(
            base: str | None, device: str = "cpu", *, attn: str | None = None, **_: Any
        ) -> tuple[Any, Any, Path]:
            return (
                self.load(attn or "sdpa"),
                self.tokenizer,
                Path(f"random-{self.args.random_config}"),
            )

        # The runner settles its auto values (batch, checkpointing) from the base's config
        # before loading, so the random shape must stand in there too.
        with (
            mock.patch.object(sft, "load_base", load),
            mock.patch.object(sft, "base_config", lambda path: shape),
        ):
            yield

    def train_config(self, name: str, extra: dict[str, Any]) -> Any:
        from openclone.train.config import TrainConfig

        return TrainConfig(
            dataset=self.dataset,
            name=name,
            base=self.base,
            output_dir=self.home / "runs" / name,
            epochs=1.0,
            batch_size=self.rows_per_step,
            max_length=self.args.max_length,
            eval_fraction=0.0,  # an evaluation inside the timed steps would be timed too
            save_steps=1_000_000,  # only the final checkpoint, written after the clock stops
            device=self.device,  # type: ignore[arg-type]
            seed=self.args.seed,
            extra=extra,
        )


# ---- setups ---------------------------------------------------------------------------------

# Training arguments worth recording with each result (the rest are the libraries' defaults).
_ARG_KEYS = (
    "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs",
    "learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay", "optim",
    "activation_checkpointing", "bf16", "fp16", "torch_compile", "use_liger_kernel", "seed",
    "max_length", "packing", "packing_strategy", "padding_free", "logging_steps",
)  # fmt: skip


def _settings(trainer: Any, model: Any, **more: Any) -> dict[str, Any]:
    args = trainer.args
    out = {k: getattr(args, k) for k in _ARG_KEYS if hasattr(args, k)}
    out["attn_implementation"] = getattr(model.config, "_attn_implementation", None)
    out["dtype"] = str(next(model.parameters()).dtype)
    return {**out, **more}


def run_baseline(bench: Bench) -> tuple[Result, Flops]:
    """Plain transformers + PEFT: the Trainer, a padding collator, SDPA, nothing fused.

    Every setting OpenClone decides by itself (LoRA rank, learning rate, checkpointing) is
    taken from the same ``TrainConfig.resolved`` that ``SFTRunner`` applies, so only the
    way batches are built and computed differs.
    """
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, PrinterCallback, Trainer, TrainingArguments

    t0 = time.perf_counter()
    model = bench.load("sdpa")
    resolved = bench.train_config("baseline", {}).resolved(
        num_params=model.num_parameters(),
        device=bench.device,
        max_positions=getattr(model.config, "max_position_embeddings", None),
    )
    lora = LoraConfig(
        r=resolved.lora_r,
        lora_alpha=resolved.lora_alpha,
        lora_dropout=resolved.lora_dropout,
        target_modules=resolved.lora_target_modules,
        task_type="CAUSAL_LM",
    )
    gpu = bench.device == "cuda"
    args = TrainingArguments(
        output_dir=str(bench.home / "runs" / "baseline"),
        num_train_epochs=1,
        per_device_train_batch_size=bench.args.batch_size,
        learning_rate=resolved.learning_rate,
        lr_scheduler_type=resolved.lr_scheduler,
        warmup_steps=resolved.warmup_ratio,
        weight_decay=resolved.weight_decay,
        activation_checkpointing=bool(resolved.gradient_checkpointing),
        bf16=bench.dtype == torch.bfloat16,
        fp16=bench.dtype == torch.float16,
        use_cpu=not gpu,
        logging_steps=resolved.logging_steps,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=resolved.seed,
        data_seed=resolved.seed,
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
    )
    flops_model = model  # before PEFT wraps it: LoRA's own Linear layers are counted apart
    peft_model = get_peft_model(model, lora)
    lora_params = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    flops = Flops.of(flops_model, lora_params, bench.lengths)
    clock = StepClock()
    trainer = Trainer(
        model=peft_model,
        args=args,
        train_dataset=Dataset.from_list(bench.rows),
        data_collator=DataCollatorForSeq2Seq(bench.tokenizer, padding="longest"),
        processing_class=bench.tokenizer,
        callbacks=[clock],
    )
    trainer.remove_callback(PrinterCallback)  # a dict per step would bury the table
    trainer.train()
    steps, tokens, seconds = timed(clock, bench.args.warmup)
    result = Result(
        setup="baseline: HF Trainer+PEFT, padded",
        steps=len(clock.marks),
        timed_steps=steps,
        rows_per_step=bench.args.batch_size,
        timed_tokens=tokens,
        timed_seconds=seconds,
        total_tokens=trainer.state.num_input_tokens_seen,
        wall_seconds=time.perf_counter() - t0,
        trainable_params=lora_params,
        peak_memory_gib=peak_memory_gib(),
        settings=_settings(
            trainer,
            peft_model,
            collator="DataCollatorForSeq2Seq(longest)",
            truncated_at=bench.args.max_length,
        ),
    )
    del trainer, peft_model, model, flops_model
    free_memory()
    return result, flops


def run_openclone(bench: Bench, label: str, extra: dict[str, Any]) -> Result:
    """OpenClone's trainer as a user runs it: ``SFTRunner(TrainConfig(...)).run()``."""
    from openclone.train.sft import SFTRunner

    t0 = time.perf_counter()
    slug = "openclone" + "".join(f"-{k}" for k in sorted(extra))
    clock = StepClock()
    runner = SFTRunner(bench.train_config(slug.replace("_", "-"), extra), callbacks=[clock])
    with bench.base_for_runner():
        runner.run()
    trainer = runner.trainer
    steps, tokens, seconds = timed(clock, bench.args.warmup)
    model = trainer.model
    result = Result(
        setup=label,
        steps=len(clock.marks),
        timed_steps=steps,
        rows_per_step=bench.rows_per_step,
        timed_tokens=tokens,
        timed_seconds=seconds,
        total_tokens=trainer.state.num_input_tokens_seen,
        wall_seconds=time.perf_counter() - t0,
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        peak_memory_gib=peak_memory_gib(),
        settings=_settings(trainer, model, packed_rows=bench.packed),
    )
    runner.trainer = None
    del trainer, runner, model
    free_memory()
    return result


# ---- report ---------------------------------------------------------------------------------


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} CPUs)"
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} CPUs)"


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in (
        "torch",
        "transformers",
        "trl",
        "peft",
        "accelerate",
        "liger-kernel",
        "flash-attn",
    ):
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def report(
    bench: Bench, results: list[Result], flops: Flops, peak: float, peak_source: str
) -> dict[str, Any]:
    console = Console()
    if not console.is_terminal:  # a log file: wide enough that the table does not wrap
        console = Console(width=140)
    args = bench.args
    base = results[0]
    per_token = flops.per_token
    table = Table(
        title=f"LoRA training throughput: {bench.base_desc}, {device_name(bench.device)}",
        caption=f"{len(bench.rows)} conversations, one epoch each side; first {args.warmup} "
        "steps not timed; tokens = non-padding tokens",
    )
    table.add_column("setup", no_wrap=True)
    for col in ("steps (timed)", "batch", "tokens/s", "MFU", "timed s", "wall s"):
        table.add_column(col, justify="right")
    rows = []
    for r in results:
        mfu = r.tokens_per_second * per_token / peak
        ratio = r.tokens_per_second / base.tokens_per_second
        rows.append({**asdict(r), "tokens_per_second": r.tokens_per_second, "mfu": mfu,
                     "ratio_vs_baseline": ratio})  # fmt: skip
        table.add_row(
            r.setup,
            f"{r.steps} ({r.timed_steps})",
            r.batch,
            f"{r.tokens_per_second:,.1f}",
            f"{mfu:.2%}",
            f"{r.timed_seconds:.1f}",
            f"{r.wall_seconds:.1f}",
        )
    console.print(table)
    for r in results[1:]:
        console.print(
            f"[bold]{r.setup} / baseline: {r.tokens_per_second / base.tokens_per_second:.2f}x[/bold]"
            " tokens/s"
        )
    lengths = bench.lengths
    console.print(
        f"examples: {len(lengths)} conversations from {args.data.name}, tokens per conversation "
        f"mean {sum(lengths) / len(lengths):.0f}, p50 {pct(lengths, 50):.0f}, p90 "
        f"{pct(lengths, 90):.0f}, max {max(lengths)} ({bench.truncated} cut at {args.max_length}); "
        f"{bench.packed} packed rows of {args.max_length}"
    )
    console.print(
        f"MFU = tokens/s x {per_token / 1e9:.3f} GFLOP/token (4 x {flops.linear_params / 1e6:.1f}M "
        f"frozen linear + 6 x {flops.lora_params / 1e6:.2f}M LoRA + causal attention) / peak "
        f"{peak / 1e9:,.1f} GFLOP/s ({peak_source})"
    )
    total = ALPACA["examples"] * ALPACA["tokens_per_example"] * ALPACA["epochs"]
    hours = {r.setup: total / r.tokens_per_second / 3600 for r in results}
    unit = "GPU-hours (1 GPU)" if bench.device == "cuda" else "hours on this machine"
    console.print(
        f"Alpaca job estimate (52K examples x ~270 tokens x 3 epochs = {total / 1e6:.1f}M tokens), "
        f"{unit}: " + "; ".join(f"{k}: {v:,.2f}" for k, v in hours.items())
    )
    return {
        "rows": rows,
        "alpaca_estimate": {**ALPACA, "tokens": total, "unit": unit, "hours": hours},
    }


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--model", default="bundled", help="bundled, an HF model dir or a .gguf")
    ap.add_argument(
        "--random-config",
        choices=sorted(SHAPES),
        help="random weights of this shape (the tokenizer still comes from --model)",
    )
    ap.add_argument("--steps", type=int, default=20, help="timed baseline steps")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first (>= 1)")
    ap.add_argument("--batch-size", type=int, default=4, help="conversations per baseline step")
    ap.add_argument("--max-length", type=int, default=256, help="truncation and packed row length")
    ap.add_argument(
        "--examples",
        type=int,
        help="conversations (default: batch-size x (warmup + steps)); sets the steps instead",
    )
    ap.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    ap.add_argument(
        "--liger",
        action=argparse.BooleanOptionalAction,
        help="add a setup with Liger's kernels (default: on GPU when liger-kernel is installed)",
    )
    ap.add_argument("--compile", action="store_true", help="add torch.compile to that extra setup")
    ap.add_argument("--peak-tflops", type=float, help="the device's peak, for MFU")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", type=Path, default=RESULTS / "train_throughput.json")
    args = ap.parse_args()
    if args.warmup < 1:
        ap.error("--warmup must be at least 1: the first step pays for one-off set-up")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA GPU is visible to torch")
    if args.liger and (args.device or ("cuda" if torch.cuda.is_available() else "cpu")) != "cuda":
        ap.error("--liger: Liger's kernels are Triton kernels, CUDA only")
    if args.liger and importlib.util.find_spec("liger_kernel") is None:
        ap.error("--liger: pip install liger-kernel")
    return args


def main() -> None:
    args = parse_args()
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)  # use_liger_kernel's rename notice
    with tempfile.TemporaryDirectory(prefix="openclone-train-bench-") as tmp:
        # The runs' adapters and registry records must never show up in the user's model list.
        os.environ["OPENCLONE_HOME"] = tmp
        bench = Bench(args, Path(tmp))
        liger = (
            args.liger
            if args.liger is not None
            else bench.device == "cuda" and importlib.util.find_spec("liger_kernel") is not None
        )
        measured = [matmul_flops(bench.device)]
        baseline, flops = run_baseline(bench)
        results = [baseline, run_openclone(bench, "openclone (defaults)", {})]
        extra = {"use_liger_kernel": True} if liger else {}
        if args.compile:
            extra["torch_compile"] = True
        if extra:
            label = (
                "openclone" + (" +liger" if liger else "") + (" +compile" if args.compile else "")
            )
            results.append(run_openclone(bench, label, extra))
        measured.append(
            matmul_flops(bench.device)
        )  # the best of before and after: noise only slows
    peak, source = pick_peak(bench.device, args.peak_tflops, max(measured))
    summary = report(bench, results, flops, peak, source)
    out = {
        "config": {
            **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "device": bench.device,
            "device_name": device_name(bench.device),
            "torch_threads": torch.get_num_threads(),
            "model": bench.base_desc,
            "tokenizer_from": str(bench.base_path),
            "shape": SHAPES.get(args.random_config or ""),
            "conversations": len(bench.rows),
            "truncated": bench.truncated,
            "tokens": sum(bench.lengths),
            "packed_rows": bench.packed,
            "versions": versions(),
        },
        "flops": {
            "formula": FLOPS_FORMULA,
            **asdict(flops),
            "per_token": flops.per_token,
            "peak_flops": peak,
            "peak_source": source,
            "matmul_measured_flops": measured,
        },
        **summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=str))
    Console().print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
