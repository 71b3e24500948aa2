"""``openclone train`` and ``openclone export``: recipes over :mod:`openclone.train`."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from openclone.cli.common import (
    FAILED,
    INTERRUPTED,
    announce_job,
    console,
    err,
    exit_on_error,
    opened_store,
)

__all__ = ["export_command", "train_command"]


def _resolve_base(base: str | None, settings_file: Path | None) -> tuple[str | None, str | None]:
    """(path, catalog name) of an explicit ``--base``: a path is used as is; a name is looked
    up in the catalog. ``(None, None)`` without one, so that train.toml or the resumed run's
    own base (and its name) stand."""
    from openclone.config import BUNDLED_MODEL_NAME, bundled_model_path, load_settings
    from openclone.train.config import default_base_name

    if base is None:
        return None, None
    if base == BUNDLED_MODEL_NAME:
        # As a path: "no base" would leave the one in train.toml in place.
        return str(bundled_model_path()), BUNDLED_MODEL_NAME
    if Path(base).expanduser().exists():
        # Named too, or a base_name kept from train.toml or a resumed run would stay with it.
        return base, default_base_name(base)
    entry = load_settings(settings_file).model(base)
    path = entry and (entry.params.get("model_path") or entry.params.get("model"))
    if not path:
        raise typer.BadParameter(
            f"{base!r} is neither a path nor a catalog model with a model_path", param_hint="--base"
        )
    return str(path), base


def _build_config(config: Path | None, resume: bool, **flags: Any) -> Any:
    from openclone.train.config import TrainConfig, openclone_home

    if resume and config is None:
        # Resume the run exactly as it was configured (its saved train_config.json).
        run_dir = flags.get("output_dir") or (
            openclone_home() / "models" / flags["name"] if flags.get("name") else None
        )
        saved = Path(run_dir) / "train_config.json" if run_dir else None
        if saved is None or not saved.is_file():
            raise typer.BadParameter("--resume needs --name or --output of an earlier run")
        data = json.loads(saved.read_text())
        data.update({k: v for k, v in flags.items() if v is not None and k != "dataset"})
        return TrainConfig.from_dict({**data, "resume": True})
    if config is not None:
        return TrainConfig.from_toml(config, **flags, resume=resume or None)
    if flags.get("dataset") is None:
        raise typer.BadParameter("--dataset is required (or --config with a dataset)")
    return TrainConfig.from_dict(
        {k: v for k, v in flags.items() if v is not None} | {"resume": resume}
    )


def _foreground(cfg: Any, settings: Path | None) -> None:
    # Library progress bars (GGUF tensors, dataset maps) would fight with the Rich bar.
    os.environ.setdefault("TQDM_DISABLE", "1")
    from openclone.train.distributed import Launch
    from openclone.train.sft import Progress as Event
    from openclone.train.sft import SFTRunner

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[loss]}"),
        TimeElapsedColumn(),
    )
    # Under accelerate launch every process runs this; one bar and one summary are enough.
    main = Launch.from_env().rank == 0
    with Progress(*columns, console=err, disable=not main) as bar:
        task = bar.add_task("loading", total=None, loss="")

        def on_progress(p: Event) -> None:
            loss = f"loss {p.loss:.4f}" if p.loss is not None else ""
            bar.update(
                task, description=p.phase, completed=p.step, total=p.total or None, loss=loss
            )

        runner = SFTRunner(cfg, on_progress=on_progress)

        def on_sigint(signum: int, frame: FrameType | None) -> None:
            # First Ctrl-C: checkpoint and stop; the second one interrupts at once.
            if main:
                err.print("[yellow]stopping after this step (Ctrl-C again to abort)…[/yellow]")
            runner.request_stop()
            signal.signal(signal.SIGINT, signal.default_int_handler)

        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            result = runner.run()
        finally:
            signal.signal(signal.SIGINT, previous)
    if result.stopped:
        if result.main_process:
            err.print(
                f"stopped at step {result.final_step}/{result.max_steps}; continue with "
                f"[bold]openclone train --resume --name {result.name}[/bold]"
            )
        raise typer.Exit(INTERRUPTED)
    if not result.main_process:
        return
    from openclone.registry.trained import register_run

    with opened_store(settings) as store:
        versions = register_run(store, result.name, cfg.register)
    table = Table("", "", show_header=False)
    table.add_row("model", f"{result.name} (serve as {cfg.base_name}:{result.name})")
    table.add_row("registry", ", ".join(v.pinned for v in versions))
    table.add_row("adapter", str(result.adapter_dir))
    for key in ("final_step", "train_loss", "eval_loss", "tokens_per_second", "wall_seconds"):
        table.add_row(key, str(result.metrics.get(key)))
    table.add_row("report", str(result.run_dir / "report"))
    console.print(table)


def train_command(
    dataset: Annotated[Path | None, typer.Option(help="OpenAI chat JSONL to learn from")] = None,
    name: Annotated[str | None, typer.Option(help="the run's name: served as NAME")] = None,
    register: Annotated[
        str | None, typer.Option(help="also add the result as a version of this registry model")
    ] = None,
    base: Annotated[
        str | None,
        typer.Option(help="HF model dir, .gguf file or catalog model (default: bundled)"),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="train.toml")] = None,
    output: Annotated[Path | None, typer.Option(help="run directory")] = None,
    epochs: Annotated[float | None, typer.Option(help="passes over the data")] = None,
    max_steps: Annotated[
        int | None, typer.Option(help="optimizer steps (overrides epochs)")
    ] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="peak learning rate")] = None,
    lora_r: Annotated[int | None, typer.Option(help="LoRA rank")] = None,
    lora_alpha: Annotated[int | None, typer.Option(help="LoRA alpha")] = None,
    batch_size: Annotated[int | None, typer.Option(help="sequences per device per step")] = None,
    max_length: Annotated[int | None, typer.Option(help="tokens per (packed) sequence")] = None,
    eval_fraction: Annotated[float | None, typer.Option(help="share held out for eval")] = None,
    save_steps: Annotated[int | None, typer.Option(help="checkpoint every N steps")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda")] = None,
    load_in_4bit: Annotated[
        bool | None,
        typer.Option("--4bit/--no-4bit", help="QLoRA: base in 4-bit (default: auto)"),
    ] = None,
    cost_per_hour: Annotated[float | None, typer.Option(help="$/hour for the report")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="continue from the last checkpoint")
    ] = False,
    detach: Annotated[bool, typer.Option("--detach", help="run as a background job")] = False,
    settings: Annotated[Path | None, typer.Option(help="openclone.toml (for --base names)")] = None,
) -> None:
    """Fine-tune a base model with LoRA on a chat JSONL; the result is served by name."""
    from openclone.jobs import start_job

    with exit_on_error(FAILED):
        base_path, base_name = _resolve_base(base, settings)
        flags = {
            "dataset": dataset, "name": name, "register": register, "base": base_path, "base_name": base_name,
            "output_dir": output, "epochs": epochs, "max_steps": max_steps, "learning_rate": lr,
            "lora_r": lora_r, "lora_alpha": lora_alpha, "batch_size": batch_size,
            "max_length": max_length, "eval_fraction": eval_fraction, "save_steps": save_steps,
            "seed": seed, "device": device, "load_in_4bit": load_in_4bit,
            "cost_per_hour": cost_per_hour,
        }  # fmt: skip
        cfg = _build_config(config, resume, **flags)
        if detach:
            announce_job(start_job("train", cfg.to_dict()), f"model {cfg.run_name}")
            return
        _foreground(cfg, settings)


def export_command(
    model: Annotated[str, typer.Argument(help="trained model name")],
    merged: Annotated[bool, typer.Option("--merged", help="HF directory, adapter merged")] = False,
    gguf: Annotated[bool, typer.Option("--gguf", help="GGUF file for llama.cpp/Ollama")] = False,
    quant: Annotated[
        str, typer.Option(help="GGUF type: q8_0, q4_k_m, q5_k_m, q6_k, f16, bf16, q4_0…")
    ] = "q8_0",
    output: Annotated[Path | None, typer.Option(help="directory (default: the run's)")] = None,
    lora_gguf: Annotated[
        bool, typer.Option("--lora-gguf", help="the adapter alone as a GGUF LoRA (llama.cpp)")
    ] = False,
) -> None:
    """Export a trained model: merged HF weights, a GGUF file and/or a GGUF LoRA adapter."""
    from openclone.train.export import export_model

    with exit_on_error(FAILED), err.status("exporting…"):
        result = export_model(
            model, merged=merged, gguf=gguf, quant=quant, output=output, lora_gguf=lora_gguf
        )
    if result.merged_dir:
        console.print(f"merged HF model: {result.merged_dir}")
    if result.gguf_path:
        console.print(
            f"GGUF: {result.gguf_path}  (serve: openclone serve --model {result.gguf_path})"
        )
    if result.lora_gguf_path:
        console.print(f"GGUF LoRA: {result.lora_gguf_path}  (llama.cpp: --lora with the base)")
