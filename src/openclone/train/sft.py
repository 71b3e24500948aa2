"""LoRA supervised fine-tuning on TRL's ``SFTTrainer``: ``SFTRunner(config).run()``.

OpenClone adds only what TRL leaves to the caller: loading a GGUF or HF base, assistant-only
labels (``train/data.py``), size-aware defaults, a graceful stop that checkpoints first,
progress events, and the run's outputs (adapter, config, report, registry record).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openclone.errors import ConfigError
from openclone.train.config import TrainConfig
from openclone.train.distributed import Launch, any_process, is_main_process, placement
from openclone.train.model import base_config, base_path, load_base, num_parameters, pick_device

__all__ = ["Progress", "SFTRunner", "TrainResult"]

log = logging.getLogger("openclone.train")


@dataclass(frozen=True)
class Progress:
    """A progress event: ``phase`` is loading, training, saving or done."""

    phase: str
    step: int = 0
    total: int = 0
    loss: float | None = None


@dataclass
class TrainResult:
    name: str
    run_dir: Path
    adapter_dir: Path | None  # None when the run stopped early (cancelled): resume it
    final_step: int
    max_steps: int
    stopped: bool
    metrics: dict[str, Any] = field(default_factory=dict)  # empty on all but the main process
    main_process: bool = True  # False on the other processes of a multi-process run


class _Hooks:
    """Progress events, loss history and the graceful-stop flag, as a TrainerCallback."""

    def __init__(self, emit: Callable[[Progress], None], stop: threading.Event) -> None:
        from transformers import TrainerCallback

        outer = self

        class Callback(TrainerCallback):
            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                emit(Progress("training", state.global_step, state.max_steps, outer.loss))
                # Every process gets the signal (the launcher forwards it), but not at the same
                # step; deciding together keeps them in step: a process that stopped alone would
                # leave the others waiting in the next step's collectives, and the checkpoint,
                # which every process helps to write, would never complete.
                if any_process(stop.is_set(), args.device):
                    outer.stopping = True
                    # Save first, then stop: a cancelled run resumes from exactly here.
                    control.should_save = True
                    control.should_training_stop = True

            def on_log(
                self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any
            ) -> None:
                if logs and "loss" in logs:
                    outer.loss = float(logs["loss"])
                if logs:  # one compact line per log event (job logs); the bar shows progress
                    shown = " ".join(
                        f"{k}={v:.4g}" for k, v in logs.items() if isinstance(v, float)
                    )
                    log.info("step %d/%d %s", state.global_step, state.max_steps, shown)

            def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                outer.start_step = state.global_step
                outer.start_tokens = state.num_input_tokens_seen
                outer.started = time.monotonic()

        self.callback = Callback()
        self.loss: float | None = None
        self.stopping = False  # every process agreed to stop
        self.start_step = 0
        self.start_tokens = 0
        self.started = time.monotonic()


class SFTRunner:
    """One LoRA SFT run. ``run()`` blocks; ``request_stop()`` (any thread, a signal handler)
    makes it checkpoint at the end of the current step and return with ``stopped=True``."""

    def __init__(
        self,
        config: TrainConfig,
        on_progress: Callable[[Progress], None] | None = None,
        callbacks: list[Any] | None = None,
    ) -> None:
        """``callbacks`` are extra ``transformers.TrainerCallback`` objects (trackers, probes)."""
        self.config = config
        self.trainer: Any = None  # the SFTTrainer of the current run, for inspection
        self.args: Any = None  # its SFTConfig, built before the base is loaded
        self._emit = on_progress or (lambda p: None)
        self._callbacks = callbacks or []
        self._stop = threading.Event()

    def request_stop(self) -> None:
        self._stop.set()

    def run(self) -> TrainResult:
        with warnings.catch_warnings():
            # PEFT looks for the base's config.json to see whether embeddings were resized; a
            # GGUF base has none (and the vocabulary is never resized here). The other one is
            # transformers deprecating a name that PEFT still calls.
            warnings.filterwarnings("ignore", message="Could not find a config file")
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing")
            return self._run()

    def _run(self) -> TrainResult:
        from transformers import PrinterCallback

        from openclone.train.report import write_report

        t0 = time.monotonic()
        cfg = self.config
        self._check_output_dir()
        device = pick_device(cfg.device)
        self._emit(Progress("loading"))
        path = base_path(cfg.base)
        bnb = importlib.util.find_spec("bitsandbytes") is not None
        # Refuse an impossible 4-bit setting now, before any distributed state is set up.
        placement(device, cfg.load_in_4bit, bnb=bnb, gguf=path.is_file(), launch=Launch.from_env())
        config = base_config(path)
        cfg = cfg.resolved(
            num_params=num_parameters(config),
            device=device,
            max_positions=getattr(config, "max_position_embeddings", None),
        )
        train_convs, eval_convs = self._conversations(cfg)
        # The SFTConfig comes before the weights: building it sets up the distributed state
        # (each process's GPU, the process group) and registers a DeepSpeed config, which
        # from_pretrained reads to load ZeRO-3 partitioned and FSDP rank-0-only. Held on self
        # for the whole run, since transformers keeps only a weak reference to that config.
        self.args = args = self._sft_args(cfg, device, has_eval=bool(eval_convs))
        launch = Launch.from_env().with_trainer_args(args)
        place = placement(device, cfg.load_in_4bit, bnb=bnb, gguf=path.is_file(), launch=launch)
        cfg = dataclasses.replace(cfg, load_in_4bit=place.load_in_4bit)  # recorded as decided
        main = is_main_process()
        if main:  # one writer: on shared storage the processes' writes would race
            cfg.run_dir.mkdir(parents=True, exist_ok=True)
            (cfg.run_dir / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        model, tokenizer, path = load_base(
            cfg.base, device, place=place, attn=self._attention(device), config=config
        )
        trainer, hooks, stats = self._trainer(cfg, args, model, tokenizer, train_convs, eval_convs)
        self.trainer = trainer
        trainer.remove_callback(PrinterCallback)  # raw dict prints; _Hooks logs them instead
        last = self._last_checkpoint(cfg)
        log.info(
            "training %s on %s (%s, %s x%d); resume from %s",
            cfg.run_name, device, path, launch.strategy, args.world_size, last,
        )  # fmt: skip
        # A stop asked for while loading skips training altogether; every process must take
        # the same branch, or the ones that train wait forever for the ones that did not.
        hooks.stopping = any_process(self._stop.is_set(), args.device)
        if not hooks.stopping:
            trainer.train(resume_from_checkpoint=last)
        state = trainer.state
        result = TrainResult(
            name=cfg.run_name,
            run_dir=cfg.run_dir,
            adapter_dir=None,
            final_step=state.global_step,
            max_steps=state.max_steps,
            stopped=hooks.stopping and (state.global_step < state.max_steps or not state.max_steps),
            main_process=main,
        )
        if result.stopped:
            log.info(
                "stopped at step %d; a checkpoint is saved, resume with --resume", result.final_step
            )
            return result
        self._emit(Progress("saving", state.global_step, state.max_steps))
        trainer.save_model(str(cfg.adapter_dir))  # every process: FSDP/ZeRO-3 gather the weights
        evaluated = any(
            e.get("step") == state.global_step for e in state.log_history if "eval_loss" in e
        )
        if trainer.eval_dataset is not None and not evaluated:
            trainer.evaluate()  # the report's eval loss is the final model's
        result.adapter_dir = cfg.adapter_dir
        if main:
            # Nothing else reads these, so the other processes need not wait for them.
            result.metrics = write_report(
                cfg,
                state.log_history,
                device=device,
                train_seconds=time.monotonic() - hooks.started,
                wall_seconds=time.monotonic() - t0,
                tokens=state.num_input_tokens_seen - hooks.start_tokens,
                steps=state.global_step - hooks.start_step,
                gpus=args.world_size,
                extra=stats,
            )
            self._record(cfg, path, result)
        self._emit(Progress("done", state.global_step, state.max_steps, hooks.loss))
        return result

    # ---- pieces ---------------------------------------------------------------------------

    def _check_output_dir(self) -> None:
        ckpt = self.config.checkpoint_dir
        if not self.config.resume and ckpt.is_dir() and any(ckpt.glob("checkpoint-*")):
            raise ConfigError(
                f"{self.config.run_dir} already holds checkpoints of run {self.config.run_name!r}; "
                "pass --resume to continue it, or choose another --name/--output"
            )

    def _attention(self, device: str) -> str:
        if self.config.attn_implementation:
            return self.config.attn_implementation
        if device == "cuda" and importlib.util.find_spec("flash_attn") is not None:
            return "flash_attention_2"
        # sdpa honours per-example position_ids in packed rows (transformers builds a
        # block-diagonal causal mask from them), so packing stays exact without flash-attn.
        return "sdpa"

    def _last_checkpoint(self, cfg: TrainConfig) -> str | None:
        """The newest complete checkpoint; one cut short by a crash (no trainer_state.json,
        which the Trainer writes last) is skipped."""
        if not cfg.resume:
            return None
        found = sorted(
            (int(p.name.split("-")[1]), p)
            for p in cfg.checkpoint_dir.glob("checkpoint-*")
            if p.name.split("-")[1].isdigit()
        )
        for _, path in reversed(found):
            if (path / "trainer_state.json").is_file():
                return str(path)
            log.warning("skipping incomplete checkpoint %s", path)
        log.warning("--resume: no checkpoint in %s yet; starting from step 0", cfg.checkpoint_dir)
        return None

    def _conversations(self, cfg: TrainConfig) -> tuple[list[Any], list[Any]]:
        """(train, eval) conversations: ``eval_dataset``, or a held-out share of ``dataset``."""
        from openclone.train.data import read_chat_jsonl, split_eval

        convs = read_chat_jsonl(cfg.dataset)
        if cfg.eval_dataset is not None:
            return convs, read_chat_jsonl(cfg.eval_dataset)
        return split_eval(convs, cfg.eval_fraction, cfg.seed)

    def _trainer(
        self,
        cfg: TrainConfig,
        args: Any,
        model: Any,
        tokenizer: Any,
        train_convs: list[Any],
        eval_convs: list[Any],
    ) -> tuple[Any, _Hooks, dict[str, Any]]:
        from datasets import Dataset
        from peft import LoraConfig
        from trl import SFTTrainer

        from openclone.train.data import tokenize_split

        length = cfg.max_length or 512
        train = tokenize_split(tokenizer, train_convs, length)
        evals = tokenize_split(tokenizer, eval_convs, length) if eval_convs else None
        stats = {
            "train_conversations": train.conversations,
            "eval_conversations": evals.conversations if evals else 0,
            "train_target_tokens": train.target_tokens,
            "truncated_conversations": train.truncated,
        }
        hooks = _Hooks(self._emit, self._stop)
        lora = LoraConfig(
            r=cfg.lora_r or 8,
            lora_alpha=cfg.lora_alpha or 16,
            lora_dropout=cfg.lora_dropout,
            target_modules=cfg.lora_target_modules,
            task_type="CAUSAL_LM",
        )
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(train.rows),
            eval_dataset=Dataset.from_list(evals.rows) if evals else None,
            processing_class=tokenizer,
            peft_config=lora,
            callbacks=[hooks.callback, *self._callbacks],
        )
        return trainer, hooks, stats

    def _sft_args(self, cfg: TrainConfig, device: str, *, has_eval: bool) -> Any:
        import torch
        from trl import SFTConfig

        gpu = device == "cuda"
        bf16 = gpu and torch.cuda.is_bf16_supported()
        args: dict[str, Any] = {
            "output_dir": str(cfg.checkpoint_dir),
            "num_train_epochs": cfg.epochs,
            "max_steps": cfg.max_steps,
            "learning_rate": cfg.learning_rate,
            "lr_scheduler_type": cfg.lr_scheduler,
            "warmup_steps": cfg.warmup_ratio,  # a float < 1 is a ratio of the total steps
            "weight_decay": cfg.weight_decay,
            "per_device_train_batch_size": cfg.batch_size,
            "per_device_eval_batch_size": cfg.batch_size,
            "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
            "activation_checkpointing": bool(cfg.gradient_checkpointing),
            "max_length": cfg.max_length,
            "packing": bool(cfg.packing),
            "packing_strategy": "bfd",  # keeps conversations whole; positions restart per example
            "eval_strategy": "steps" if has_eval else "no",
            "eval_steps": cfg.eval_steps or 0.1,  # a float < 1 is a share of the total steps
            "logging_steps": cfg.logging_steps,
            "save_strategy": "steps",
            "save_steps": cfg.save_steps,
            "save_total_limit": cfg.save_total_limit,
            "seed": cfg.seed,
            "data_seed": cfg.seed,
            "bf16": bf16,
            "fp16": gpu and not bf16,
            "use_cpu": not gpu,
            "report_to": "none",
            "disable_tqdm": True,  # progress goes through on_progress (Rich bar, job status)
            # Padding-free rows carry no padding, so every token counts; padded batches have a mask.
            "include_num_input_tokens_seen": "all" if cfg.packing else "non_padding",
            "dataloader_num_workers": 0,
            **cfg.extra,
        }
        return SFTConfig(**args)

    def _record(self, cfg: TrainConfig, path: Path, result: TrainResult) -> None:
        from openclone.files import file_sha256
        from openclone.store.trained import TrainedModel, save_record

        save_record(
            TrainedModel(
                name=cfg.run_name,
                base=cfg.base_name or "",
                base_path=str(path),
                adapter_path=str(cfg.adapter_dir),
                dataset=str(cfg.dataset),
                dataset_sha256=file_sha256(cfg.dataset),
                config=cfg.to_dict(),
                metrics=result.metrics,
                gguf_adapter=self._gguf_adapter(cfg, path),
            ),
            cfg.home,
        )

    def _gguf_adapter(self, cfg: TrainConfig, path: Path) -> str:
        """The adapter as a GGUF LoRA next to the PEFT one, so llama.cpp can serve the run.

        HF bases get one too where their architecture converts (it suits any GGUF of that
        base); a base that does not convert still leaves a usable PEFT adapter, so that is
        a warning, not a failed run."""
        from openclone.train.gguf_lora import convert_adapter

        try:
            return str(convert_adapter(cfg.adapter_dir, path, cfg.adapter_dir / "adapter.gguf"))
        except ConfigError as exc:
            log.warning("no GGUF LoRA for %s (llama.cpp cannot serve it): %s", cfg.run_name, exc)
            return ""
