"""OpenAI-shaped fine-tuning jobs over OpenClone's detached ``train`` jobs.

``create_job`` turns a request (model, files, hyperparameters) into a :class:`TrainConfig`,
copies the files out of the store for the trainer and starts a ``train`` job
(:func:`openclone.jobs.runner.start_job`). ``sync_job`` follows it: the train job's state
becomes OpenAI's status, its step metrics become ``metrics`` events, and when it succeeds
the run is registered — as its run name and as ``ft:BASE:ORG:SUFFIX:ID`` — so both names
route to it at once. Cancel, pause and resume stop the train job (which checkpoints first)
and resume it from that checkpoint.

Hyperparameters map onto the trainer: ``n_epochs`` is ``epochs``; ``batch_size`` is
examples per step (packing off, so a step sees exactly that many); the
``learning_rate_multiplier`` scales OpenClone's default LoRA learning rate for the base.
``"auto"`` keeps OpenClone's defaults.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openclone.config import Settings
from openclone.errors import ConfigError, InvalidRequestError
from openclone.files import atomic_write
from openclone.jobs import runner
from openclone.store.db import Store
from openclone.store.files import file_content, get_file, save_file
from openclone.store.fine_tuning import (
    FINAL,
    get_job_row,
    insert_job,
    job_object,
    load_job_row,
    tenant_org,
    update_job,
)
from openclone.store.tables import FineTuningJob, now
from openclone.train.config import TrainConfig
from openclone.train.metrics_log import read_metrics

__all__ = [
    "FineTuneRequest",
    "cancel_job",
    "create_job",
    "list_checkpoints",
    "pause_job",
    "resume_job",
    "sync_job",
]

log = logging.getLogger("openclone.jobs")
_PART = re.compile(r"[A-Za-z0-9._-]+")
_SUFFIX = re.compile(r"[A-Za-z0-9._-]{1,40}")
_NAME_MAX = 128  # the registry's names
Event = tuple[str, str, str, Any]  # level, kind, message, data


@dataclass
class FineTuneRequest:
    """What ``POST /v1/fine_tuning/jobs`` asks for; ``None`` hyperparameters are "auto"."""

    model: str
    training_file: str
    validation_file: str | None = None
    suffix: str | None = None
    seed: int | None = None
    n_epochs: int | None = None
    batch_size: int | None = None
    learning_rate_multiplier: float | None = None
    metadata: dict[str, str] | None = None

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "n_epochs": self.n_epochs or "auto",
            "batch_size": self.batch_size or "auto",
            "learning_rate_multiplier": self.learning_rate_multiplier or "auto",
        }


def _base(settings: Settings, model: str) -> str | None:
    """The trainer's ``base`` for catalog model ``model`` (None: the bundled GGUF)."""
    config = settings.model(model)
    if config is None:
        raise InvalidRequestError(
            f"Model {model!r} is not available for fine-tuning or does not exist; fine-tune "
            f"one of the catalog's models: {', '.join(m.name for m in settings.models)}",
            param="model", code="model_not_available",
        )  # fmt: skip
    if config.engine not in ("llamacpp", "transformers"):
        raise InvalidRequestError(
            f"Model {model!r} is served by the {config.engine!r} engine: OpenClone fine-tunes "
            "the models it has the weights of (llamacpp and transformers catalog models)",
            param="model", code="model_not_available",
        )  # fmt: skip
    if not _PART.fullmatch(model):
        raise InvalidRequestError(
            f"Model {model!r}: a base to fine-tune needs a name of letters, digits, . _ -",
            param="model",
        )
    path = config.params.get("model_path")
    if path and config.params.get("gguf_file"):
        path = str(Path(path) / str(config.params["gguf_file"]))
    return str(path) if path else None


def _training_data(store: Store, tenant: str, file_id: str, param: str) -> bytes:
    record = get_file(store, tenant, file_id, param)
    if record.purpose != "fine-tune":
        raise InvalidRequestError(
            f"File {file_id} has purpose {record.purpose!r}; fine-tuning takes files uploaded "
            "with purpose 'fine-tune'",
            param=param, code="invalid_file_purpose",
        )  # fmt: skip
    return file_content(store, tenant, file_id, param)


def create_job(
    store: Store, settings: Settings, tenant: str, req: FineTuneRequest
) -> dict[str, Any]:
    """Check ``req``, start its train job and return the ``fine_tuning.job`` object."""
    base = _base(settings, req.model)
    if req.suffix is not None and not _SUFFIX.fullmatch(req.suffix):
        raise InvalidRequestError(
            "suffix: 1 to 40 letters, digits, '.', '_' or '-'", param="suffix"
        )
    train = _training_data(store, tenant, req.training_file, "training_file")
    valid = (
        _training_data(store, tenant, req.validation_file, "validation_file")
        if req.validation_file
        else None
    )
    job_id = "ftjob-" + secrets.token_hex(12)
    short = secrets.token_hex(4)
    ft_name = f"ft:{req.model}:{tenant_org(store, tenant)}:{req.suffix or ''}:{short}"
    if len(ft_name) > _NAME_MAX:
        raise InvalidRequestError(
            f"the fine-tuned model's name {ft_name!r} would be over {_NAME_MAX} characters; "
            "use a shorter suffix",
            param="suffix",
        )
    run_name = f"ft-{req.suffix.replace('.', '-')}-{short}" if req.suffix else f"ft-{short}"
    data_dir = settings.home / "fine_tuning" / job_id
    atomic_write(data_dir / "train.jsonl", train)  # 0600, as every copy of people's data
    if valid is not None:
        atomic_write(data_dir / "validation.jsonl", valid)
    seed = req.seed if req.seed is not None else secrets.randbelow(2**31)
    try:
        config = TrainConfig(
            dataset=data_dir / "train.jsonl",
            eval_dataset=data_dir / "validation.jsonl" if valid is not None else None,
            eval_fraction=0.0,  # as OpenAI: validation metrics come from a validation file
            name=run_name, base=base, base_name=req.model, home=settings.home,
            epochs=float(req.n_epochs or 3),
            batch_size=req.batch_size,
            packing=False if req.batch_size else None,  # a batch is that many examples
            learning_rate_multiplier=req.learning_rate_multiplier or 1.0,
            seed=seed,
            # A checkpoint per epoch, the last three kept (as OpenAI keeps them).
            save_total_limit=3, extra={"save_strategy": "epoch"},
        )  # fmt: skip
    except ConfigError as exc:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise InvalidRequestError(str(exc), param="hyperparameters") from exc
    row = FineTuningJob(
        id=job_id, model=req.model, training_file=req.training_file,
        validation_file=req.validation_file, suffix=req.suffix, seed=seed,
        hyperparameters=req.hyperparameters(), method={"type": "supervised"},
        metadata_=req.metadata, status="validating_files", ft_name=ft_name, run_name=run_name,
        steps_seen=0, result_files=[], paths=[str(data_dir), str(config.run_dir)], created=now(),
    )  # fmt: skip
    insert_job(store, tenant, row, [
        f"Created fine-tuning job: {job_id}",
        f"Validating training file: {req.training_file}"
        + (f" and validation file: {req.validation_file}" if req.validation_file else ""),
    ])  # fmt: skip
    try:
        status = runner.start_job("train", config.to_dict())
    except OSError as exc:
        update_job(store, job_id, status="failed", finished=now(),
                   error={"code": "server_error", "message": str(exc), "param": None},
                   events=[("error", "message", f"The job could not start: {exc}", None)])  # fmt: skip
        return job_object(load_job_row(store, job_id))
    job_dir = runner.jobs_dir() / status.id
    update_job(
        store, job_id, status="queued", run_job=status.id,
        paths=[*row.paths, str(job_dir)],
        events=[("info", "message", "Files validated, moving job to queued state", None)],
    )  # fmt: skip
    return job_object(load_job_row(store, job_id))


# ---- following a job ------------------------------------------------------------------------


def sync_job(store: Store, settings: Settings, job_id: str) -> bool:
    """Bring the job's row up to date with its train job; True when this call registered
    the fine-tuned model (the caller's router should refresh its registry names)."""
    row = load_job_row(store, job_id)
    if row.status in FINAL or row.status == "paused" or row.run_job is None:
        return False
    try:
        st = runner.get_job(row.run_job)
    except InvalidRequestError:
        # Its job directory is not here: gone, or on the machine of another gateway sharing
        # this database (that one follows it).
        return False
    metrics = read_metrics(runner.jobs_dir() / row.run_job / "metrics.jsonl")
    events = [_metrics_event(m) for m in metrics[row.steps_seen :]]
    values: dict[str, Any] = {"steps_seen": len(metrics)}
    if st.state == "running" and row.status != "running":
        values.update(status="running", started=row.started or st.started or now())
        events.insert(0, ("info", "message", "Fine-tuning job started", None))
    update_job(store, job_id, events=events, **values)
    if st.state == "succeeded":
        return _succeed(store, settings, load_job_row(store, job_id), metrics)
    if st.state == "failed":
        _fail(store, row, st.error or "the training job failed")
    elif st.state == "cancelled":  # stopped from outside the API (`openclone jobs cancel`)
        update_job(store, job_id, status="cancelled", finished=now(),
                   events=[("info", "message", "Fine-tuning job cancelled", None)])  # fmt: skip
    return False


def _metrics_event(m: dict[str, Any]) -> Event:
    step, total = int(m.get("step", 0)), int(m.get("total_steps", 0))
    if "checkpoint" in m:
        return ("info", "message", f"Checkpoint created at step {step}", {"step": step})
    data: dict[str, Any] = {"step": step, "total_steps": total}
    data.update({k: m[k] for k in _METRIC_KEYS if k in m})
    if m.get("tokens"):
        data["trained_tokens"] = int(m["tokens"])
    parts = []
    if "train_loss" in m:
        parts.append(f"training loss={m['train_loss']:.4f}")
    if "valid_loss" in m:
        parts.append(f"validation loss={m['valid_loss']:.4f}")
    if m.get("tokens"):
        parts.append(f"{int(m['tokens'])} tokens")
    return ("info", "metrics", f"Step {step}/{total}: {', '.join(parts)}", data)


_METRIC_KEYS = (
    "train_loss", "train_mean_token_accuracy", "valid_loss", "valid_mean_token_accuracy",
    "learning_rate", "epoch",
)  # fmt: skip


def _fail(store: Store, row: FineTuningJob, message: str) -> None:
    update_job(
        store, row.id, status="failed", finished=now(),
        error={"code": "training_failed", "message": message, "param": None},
        events=[("error", "message", f"Fine-tuning job failed: {message}", None)],
    )  # fmt: skip


def _succeed(
    store: Store, settings: Settings, row: FineTuningJob, metrics: list[dict[str, Any]]
) -> bool:
    from openclone.registry.trained import register_run, register_trained
    from openclone.registry.versions import set_alias
    from openclone.store.trained import get_trained

    try:
        record = get_trained(row.run_name, settings.home)
        register_run(store, row.run_name, None, settings.home)  # RUN@1, aliased as RUN
        version = register_trained(store, record, row.ft_name, actor="fine_tuning")
        set_alias(store, row.ft_name, version.version, actor="fine_tuning")
    except Exception as exc:  # the model is trained but cannot be served: say so, keep it
        log.exception("registering fine-tuning job %s failed", row.id)
        _fail(store, row, f"the trained model could not be registered: {exc}")
        return False
    tenant = _tenant_name(store, row.tenant_id)
    results = save_file(
        store, tenant, "fine-tune-results", "step_metrics.csv", _results_csv(metrics)
    )
    tokens = max((int(m.get("tokens") or 0) for m in metrics), default=0)
    update_job(
        store, row.id, status="succeeded", finished=now(), fine_tuned_model=row.ft_name,
        trained_tokens=tokens, result_files=[results.id],
        events=[
            ("info", "message", f"New fine-tuned model created: {row.ft_name}", None),
            ("info", "message", f"Also served as: {row.run_name}", None),
            ("info", "message", "The job has successfully completed", None),
        ],
    )  # fmt: skip
    return True


def _tenant_name(store: Store, tenant_id: str) -> str:
    from openclone.store.tables import Tenant

    with store.session() as s:
        t = s.get(Tenant, tenant_id)
        return t.name if t is not None else tenant_id


def _results_csv(metrics: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    columns = ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]
    w = csv.writer(out)
    w.writerow(columns)
    for m in metrics:
        if "checkpoint" in m:
            continue
        w.writerow([
            m.get("step"), m.get("train_loss", ""), m.get("train_mean_token_accuracy", ""),
            m.get("valid_loss", ""), m.get("valid_mean_token_accuracy", ""),
        ])  # fmt: skip
    return out.getvalue().encode()


# ---- cancel, pause, resume --------------------------------------------------------------------


def cancel_job(store: Store, tenant: str, job_id: str) -> dict[str, Any]:
    """Stop the job for good (its train job checkpoints, then ends)."""
    row = get_job_row(store, tenant, job_id)
    if row.status in ("succeeded", "failed"):
        raise InvalidRequestError(
            f"Fine-tuning job {job_id} has already {row.status}; it cannot be cancelled.",
            param="fine_tuning_job_id",
        )
    if row.status != "cancelled":
        update_job(store, job_id, status="cancelled", finished=now(),
                   events=[("info", "message", "Fine-tuning job cancelled", None)])  # fmt: skip
        if row.run_job and row.status != "paused":
            runner.cancel_job(row.run_job)
    return job_object(load_job_row(store, job_id))


def pause_job(store: Store, tenant: str, job_id: str) -> dict[str, Any]:
    """Stop the job after a checkpoint, to be resumed later from there."""
    row = get_job_row(store, tenant, job_id)
    if row.status not in ("queued", "running"):
        raise InvalidRequestError(
            f"Fine-tuning job {job_id} is {row.status}; only a queued or running job can be "
            "paused.",
            param="fine_tuning_job_id",
        )
    update_job(store, job_id, status="paused",
               events=[("info", "message", "Fine-tuning job paused", None)])  # fmt: skip
    if row.run_job:
        st = runner.cancel_job(row.run_job)
        if st.state == "succeeded":  # it finished first: nothing is left to pause
            update_job(store, job_id, status="running",
                       events=[("info", "message", "The job finished before it paused", None)])  # fmt: skip
    return job_object(load_job_row(store, job_id))


def resume_job(store: Store, tenant: str, job_id: str) -> dict[str, Any]:
    """Start a paused job again from its last checkpoint."""
    row = get_job_row(store, tenant, job_id)
    if row.status != "paused":
        raise InvalidRequestError(
            f"Fine-tuning job {job_id} is {row.status}; only a paused job can be resumed.",
            param="fine_tuning_job_id",
        )
    if row.run_job:
        runner.resume_job(row.run_job)
    update_job(store, job_id, status="queued",
               events=[("info", "message", "Fine-tuning job resumed", None)])  # fmt: skip
    return job_object(load_job_row(store, job_id))


# ---- checkpoints ------------------------------------------------------------------------------


def list_checkpoints(
    store: Store, settings: Settings, tenant: str, job_id: str
) -> list[dict[str, Any]]:
    """The job's kept checkpoints, newest first, as ``fine_tuning.job.checkpoint`` objects.

    Their ``fine_tuned_model_checkpoint`` names follow OpenAI's shape; only the finished
    model is served."""
    row = get_job_row(store, tenant, job_id)
    root = settings.home / "models" / row.run_name / "checkpoints"
    found = []
    for path in root.glob("checkpoint-*") if root.is_dir() else []:
        step = path.name.removeprefix("checkpoint-")
        state = path / "trainer_state.json"
        if not step.isdigit() or not state.is_file():
            continue  # cut short by a crash: not a checkpoint
        history = json.loads(state.read_text(encoding="utf-8")).get("log_history", [])
        found.append((int(step), path, _step_metrics(history, int(step))))
    found.sort(key=lambda f: f[0], reverse=True)
    return [
        {
            "object": "fine_tuning.job.checkpoint",
            "id": f"ftckpt_{row.id.removeprefix('ftjob-')}_{step}",
            "created_at": int(path.stat().st_mtime),
            "fine_tuned_model_checkpoint": f"{row.ft_name}:ckpt-step-{step}",
            "fine_tuning_job_id": row.id,
            "metrics": metrics,
            "step_number": step,
        }
        for step, path, metrics in found
    ]


def _step_metrics(history: list[dict[str, Any]], step: int) -> dict[str, Any]:
    out: dict[str, Any] = {"step": step}
    for entry in history:
        if entry.get("step") != step:
            continue
        for key, name in (("loss", "train_loss"), ("mean_token_accuracy", "train_mean_token_accuracy"),
                          ("eval_loss", "valid_loss"),
                          ("eval_mean_token_accuracy", "valid_mean_token_accuracy")):  # fmt: skip
            if key in entry:
                out[name] = entry[key]
    return out
