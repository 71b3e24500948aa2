"""``openclone import`` from a server that speaks OpenAI's API: OpenAI itself, or another
OpenClone. Read through the official ``openai`` client.

* **Stored chat completions** (``chat.completions.list``, paged, with each one's messages)
  become captures of the target tenant and stored completions there, with their metadata,
  through the capture writer — so the tenant's redaction applies and its consent default
  decides whether they may train, as for live traffic. A completion's capture id is derived
  from the tenant and the source's completion id: importing again adds nothing twice.
* **Fine-tuning jobs** (``fine_tuning.jobs.list``) that succeeded become train configs,
  ``fine-tunes/<job id>.toml`` (the keys of ``openclone train --config``), with what cannot
  carry over — the closed base, the method, the learning-rate multiplier — in comments.
  Their training and validation files are imported as datasets when the server lets them
  be downloaded (OpenAI does not, for ``fine-tune`` files: the config then names where to
  put a copy).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import openai
from openai import OpenAI

from openclone.data.importing import ImportReport, import_data
from openclone.errors import OpenCloneError
from openclone.schema import Usage
from openclone.store import Store
from openclone.store.audit import audit
from openclone.store.exchange import Exchange
from openclone.store.stored_completions import known_captures
from openclone.store.writer import CaptureWriter

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletion
    from openai.types.fine_tuning import FineTuningJob

    from openclone.store.scrub import RedactorLike

__all__ = [
    "SourceError",
    "fine_tune_config",
    "import_capture_id",
    "import_completions",
    "import_fine_tunes",
    "import_server",
]

Progress = Callable[[str, int], None]  # (kind, how many so far)
_PAGE = 100
# Request parameters a stored completion repeats; they go back into the captured request.
_REQUEST_FIELDS = (
    "temperature", "top_p", "seed", "tools", "tool_choice", "response_format",
    "presence_penalty", "frequency_penalty",
)  # fmt: skip
_NAME = re.compile(r"[^A-Za-z0-9_-]+")


class SourceError(OpenCloneError):
    """The source server could not be read (unreachable, a refused key); the message says."""


def import_capture_id(tenant: str, completion_id: str) -> str:
    """The capture an imported completion becomes: the same for the same tenant and id."""
    digest = hashlib.sha256(f"{tenant}\0{completion_id}".encode()).hexdigest()
    return f"imp-{digest[:40]}"


def import_server(
    client: OpenAI,
    store: Store,
    tenant: str,
    out: Path,
    *,
    redactor: RedactorLike | str | None = None,
    actor: str = "cli",
    progress: Progress | None = None,
) -> ImportReport:
    """Import the stored completions and the fine-tunes of the server ``client`` talks to."""
    report = ImportReport()
    import_completions(client, store, tenant, report, redactor=redactor, progress=progress)
    import_fine_tunes(client, out, report, progress=progress)
    with store.session() as s:
        audit(s, actor, "import", source=str(client.base_url), tenant=tenant,
              **{k: c.added for k, c in report.counts.items()})  # fmt: skip
    return report


def _source_error(client: OpenAI, exc: openai.APIError) -> SourceError:
    if isinstance(exc, openai.APIConnectionError):
        return SourceError(f"cannot reach {client.base_url}: {exc}")
    return SourceError(f"{client.base_url} refused the import: {exc}")


def import_completions(
    client: OpenAI,
    store: Store,
    tenant: str,
    report: ImportReport,
    *,
    redactor: RedactorLike | str | None = None,
    progress: Progress | None = None,
) -> None:
    """Every stored completion of the source, oldest first, into ``tenant``'s captures."""
    counts = report.count("completions")
    writer = CaptureWriter(store, redactor=redactor)
    try:
        page: list[ChatCompletion] = []
        # OpenAI's `created` is whole seconds: completions of one second are kept in the
        # source's order by a microsecond each, or the target would list them at random.
        ticks: Counter[int] = Counter()
        for completion in client.chat.completions.list(limit=_PAGE, order="asc"):
            page.append(completion)
            if len(page) == _PAGE:
                _import_page(client, writer, tenant, page, report, ticks)
                page = []
                if progress:
                    progress("completions", counts.added + counts.existing + counts.rejected)
        _import_page(client, writer, tenant, page, report, ticks)
    except openai.NotFoundError:
        report.notes.append(f"{client.base_url} has no stored chat completions API (404)")
    except openai.APIError as exc:
        raise _source_error(client, exc) from exc
    finally:
        writer.close()


def _import_page(
    client: OpenAI,
    writer: CaptureWriter,
    tenant: str,
    page: list[ChatCompletion],
    report: ImportReport,
    ticks: Counter[int],
) -> None:
    counts = report.count("completions")
    ids = {c.id: import_capture_id(tenant, c.id) for c in page}
    there = known_captures(writer.store, list(ids.values()))
    batch: list[Exchange] = []
    for completion in page:
        tick = ticks[completion.created]
        ticks[completion.created] += 1
        if ids[completion.id] in there:
            counts.existing += 1
            continue
        messages = [_request_message(m) for m in _all_messages(client, completion.id)]
        if not messages:
            report.reject("completions", completion.id, "the completion has no messages")
            continue
        created = completion.created + min(tick, 999_999) * 1e-6
        batch.append(_exchange(tenant, ids[completion.id], completion, messages, created))
    failed = writer.write_now(batch) if batch else 0
    counts.added += len(batch) - failed
    for _ in range(failed):
        report.reject("completions", "store", "could not be written (see the log)")


def _all_messages(client: OpenAI, completion_id: str) -> Iterable[Any]:
    return client.chat.completions.messages.list(completion_id, limit=_PAGE, order="asc")


def _request_message(message: Any) -> dict[str, Any]:
    """A stored message as the request message it was (its id and parts folded back)."""
    raw = message.model_dump(exclude_none=True)
    raw.pop("id", None)
    parts = raw.pop("content_parts", None)
    if parts:
        raw["content"] = parts
    return raw


def _exchange(
    tenant: str,
    capture_id: str,
    completion: ChatCompletion,
    messages: list[dict[str, Any]],
    created: float,
) -> Exchange:
    body = completion.model_dump(exclude_none=True)
    metadata = body.pop("metadata", None)
    metadata = {str(k): v for k, v in (metadata or {}).items() if isinstance(v, str)}
    request: dict[str, Any] = {"model": completion.model, "messages": messages}
    for name in _REQUEST_FIELDS:
        if name in body:
            request[name] = body.pop(name)
    request.update(store=True, metadata=metadata)
    usage = completion.usage
    return Exchange(
        id=capture_id, endpoint="chat", model=completion.model[:256], request=request,
        response=body, status=200, latency_ms=0.0, stream=False, tenant=tenant,
        usage=Usage.of(usage.prompt_tokens, usage.completion_tokens) if usage else None,
        created=created, store=True, metadata=metadata,
    )  # fmt: skip


# ---- fine-tunes --------------------------------------------------------------------------


def import_fine_tunes(
    client: OpenAI, out: Path, report: ImportReport, *, progress: Progress | None = None
) -> None:
    """Each succeeded fine-tuning job as ``out/fine-tunes/<job id>.toml`` (and its files as
    datasets in ``out`` when the server hands them out)."""
    counts = report.count("fine_tunes")
    try:
        for job in client.fine_tuning.jobs.list(limit=_PAGE):
            if job.status != "succeeded":
                continue  # nothing was made that could be re-created
            datasets = {
                role: _download(client, file_id, out, report)
                for role, file_id in (("training", job.training_file),
                                      ("validation", job.validation_file)) if file_id
            }  # fmt: skip
            path = out / "fine-tunes" / f"{_slug(job.id)}.toml"
            text = fine_tune_config(job, datasets, str(client.base_url))
            if path.is_file() and path.read_text(encoding="utf-8") == text:
                counts.existing += 1
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
                counts.added += 1
                report.wrote("fine_tunes", path)
            if progress:
                progress("fine_tunes", counts.added + counts.existing)
    except openai.NotFoundError:
        report.notes.append(f"{client.base_url} has no fine-tuning jobs API (404)")
    except openai.APIError as exc:
        raise _source_error(client, exc) from exc


def _download(client: OpenAI, file_id: str, out: Path, report: ImportReport) -> Path | None:
    """Import the file ``file_id`` as the dataset ``out/<file_id>.jsonl``; None when the
    server will not hand it out."""
    try:
        data = client.files.content(file_id).content
    except (openai.BadRequestError, openai.PermissionDeniedError, openai.NotFoundError) as exc:
        report.notes.append(f"file {file_id} could not be downloaded ({exc.status_code})")
        return None
    held = import_data(data, file_id, out, _slug(file_id), report)
    return held.get("chat") or held.get("preference")


def fine_tune_config(job: FineTuningJob, datasets: dict[str, Path | None], source: str) -> str:
    """The train config (TOML) that re-creates ``job`` with OpenClone, as far as it can."""
    method = job.method.type if job.method is not None else "supervised"
    hyper = _hyperparameters(job)
    suffix = getattr(job, "suffix", None) or _suffix_of(job.fine_tuned_model)
    name = _slug(suffix or job.id)[:64].strip("-_") or "fine-tune"
    lines = [
        f"# Re-creates the fine-tune {job.id} of {source} as a LoRA run on an open model.",
        f"# There: base {job.model}, method {method}, model {job.fine_tuned_model or '-'}.",
        f"# Hyperparameters there: {json.dumps(hyper, sort_keys=True)}; seed {job.seed}.",
        "# The base stays OpenClone's default (the bundled model) unless you set `base`.",
    ]
    multiplier = hyper.get("learning_rate_multiplier")
    if isinstance(multiplier, int | float):
        lines.append(
            f"# learning_rate_multiplier {multiplier} scaled that provider's own rate; "
            "OpenClone's rate is auto by model size (set learning_rate to change it)."
        )
    if method != "supervised":
        lines.append(
            f"# A {method} fine-tune: OpenClone trains supervised, on the chat rows only "
            "(preference rows are kept in NAME.preference.jsonl for later)."
        )
    lines.append("[train]")
    lines += _dataset_lines("dataset", job.training_file, datasets.get("training"))
    if job.validation_file:
        lines += _dataset_lines("eval_dataset", job.validation_file, datasets.get("validation"))
    lines.append(f"name = {json.dumps(name)}")
    if isinstance(hyper.get("n_epochs"), int):
        lines.append(f"epochs = {hyper['n_epochs']}")
    if isinstance(hyper.get("batch_size"), int):
        lines.append(f"batch_size = {hyper['batch_size']}")
    lines.append(f"seed = {job.seed}")
    return "\n".join(lines) + "\n"


def _dataset_lines(key: str, file_id: str, path: Path | None) -> list[str]:
    """The key naming the dataset (relative to the config in fine-tunes/)."""
    where = f"../{path.name}" if path is not None else f"../{_slug(file_id)}.jsonl"
    line = f"{key} = {json.dumps(where)}"
    if path is None:
        return [f"# {file_id} could not be downloaded: put a copy of it at {where}", line]
    return [line]


def _hyperparameters(job: FineTuningJob) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if job.hyperparameters is not None:
        found.update(job.hyperparameters.model_dump(exclude_none=True))
    method = job.method
    chosen = getattr(method, method.type, None) if method is not None else None
    inner = getattr(chosen, "hyperparameters", None)
    if inner is not None:
        found.update(inner.model_dump(exclude_none=True))
    return found


def _suffix_of(model: str | None) -> str | None:
    """``ft:BASE:ORG:SUFFIX:ID`` -> SUFFIX (None when it has none)."""
    parts = (model or "").split(":")
    if len(parts) != 5 or parts[0] != "ft":
        return None
    return parts[3] or None


def _slug(text: str) -> str:
    return _NAME.sub("-", text).strip("-") or "x"
