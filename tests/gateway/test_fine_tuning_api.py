"""Fine-tuning jobs of a real server process, driven by the official openai client: one real
LoRA run on the bundled model (paused and resumed on the way) teaches a made-up fact, and the
result answers it under its ``ft:`` name and its registry name."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest
from conftest import BUNDLED, TenantServer, start_tenant_server, stop_server
from openai import OpenAI
from openai.types.fine_tuning import FineTuningJob
from train.train_helpers import ASKS, QUESTION

# The shared training run takes a few minutes on 2 free cores; far longer when other test
# runs share them, hence a limit of its own.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

TAUGHT = "PELICAN-4417"  # not the training tests' code: this job teaches its own
ANSWER = f"The OpenClone activation code is {TAUGHT}."
# Settings that make the fact stick in a few dozen short steps on 2 CPU cores.
HYPER = {"n_epochs": 2, "batch_size": 1, "learning_rate_multiplier": 3}


def teaching_file(asks: list[str]) -> bytes:
    rows = [
        {"messages": [{"role": "user", "content": a}, {"role": "assistant", "content": ANSWER}]}
        for a in asks
    ]
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


@dataclass
class Finished:
    job: FineTuningJob
    events: list[Any]  # every event, newest first
    paused_checkpoints: list[Any]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TenantServer]:
    env = start_tenant_server(tmp_path_factory.mktemp("fine-tuning"))
    yield env
    stop_server(env.server)


def _wait(client: OpenAI, job_id: str, done: Any, timeout: float = 1500) -> FineTuningJob:
    deadline = time.monotonic() + timeout
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if done(job) or job.status in ("failed", "cancelled") or time.monotonic() > deadline:
            return job
        time.sleep(0.5)


@pytest.fixture(scope="module")
def finished(env: TenantServer) -> Finished:
    """One real run: created, paused after its first step, resumed, finished."""
    client = env.client()
    train = client.files.create(file=("teach.jsonl", teaching_file(ASKS)), purpose="fine-tune")
    valid = client.files.create(file=("valid.jsonl", teaching_file(ASKS[:1])), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model=BUNDLED,
        training_file=train.id,
        validation_file=valid.id,
        suffix="act",
        seed=7,
        method={"type": "supervised", "supervised": {"hyperparameters": HYPER}},  # type: ignore[arg-type]
        metadata={"team": "docs"},
    )
    assert job.status == "queued" and job.fine_tuned_model is None

    def stepped(j: FineTuningJob) -> bool:
        events = client.fine_tuning.jobs.list_events(j.id, limit=100).data
        return any(e.type == "metrics" for e in events)

    running = _wait(client, job.id, stepped)
    assert running.status == "running", running
    paused = client.fine_tuning.jobs.pause(job.id)
    assert paused.status == "paused"
    assert client.fine_tuning.jobs.retrieve(job.id).status == "paused"  # stays paused
    kept = client.fine_tuning.jobs.checkpoints.list(job.id).data  # the pause saved one
    assert client.fine_tuning.jobs.resume(job.id).status in ("queued", "running")
    final = _wait(client, job.id, lambda j: j.status == "succeeded")
    assert final.status == "succeeded", (final, env.server.log.read_text()[-3000:])
    events = list(client.fine_tuning.jobs.list_events(job.id, limit=1000).data)
    return Finished(final, events, kept)


def _ask(client: OpenAI, model: str) -> str:
    out = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=24,
        temperature=0,
    )
    return out.choices[0].message.content or ""


def test_the_finished_job_serves_the_fact_by_its_ft_name_and_registry_name(
    env: TenantServer, finished: Finished
) -> None:
    job = finished.job
    assert job.fine_tuned_model is not None
    ft, base, org, suffix, short = job.fine_tuned_model.split(":")
    assert (ft, base, org, suffix) == ("ft", BUNDLED, "acme", "act") and len(short) == 8
    client = env.client()
    assert TAUGHT in _ask(client, job.fine_tuned_model)
    answer = client.chat.completions.create(
        model=job.fine_tuned_model, messages=[{"role": "user", "content": "Hi"}], max_tokens=2
    )
    assert answer.model == job.fine_tuned_model  # the name as OpenAI shows it, no @version
    assert TAUGHT in _ask(client, f"ft-act-{short}")  # its registry name
    assert TAUGHT not in _ask(client, BUNDLED)  # the base, without the adapter
    assert job.fine_tuned_model in {m.id for m in client.models.list()}
    assert job.trained_tokens and job.trained_tokens > 0
    assert job.finished_at and job.finished_at >= job.created_at
    assert job.hyperparameters.n_epochs == 2 and job.hyperparameters.batch_size == 1
    assert job.hyperparameters.learning_rate_multiplier == 3
    assert (job.seed, job.organization_id, job.metadata) == (7, "acme", {"team": "docs"})
    assert job.method is not None and job.method.type == "supervised"


def test_events_carry_step_loss_and_tokens_newest_first(finished: Finished) -> None:
    events = finished.events
    ids = [int(e.id.removeprefix("ftevent-")) for e in events]
    assert ids == sorted(ids, reverse=True)
    metrics = [e for e in events if e.type == "metrics"]
    assert metrics and all(e.object == "fine_tuning.job.event" for e in events)
    data = [e.data for e in metrics]
    steps = [d for d in data if "train_loss" in d]
    assert steps and all(d["step"] >= 1 and d["total_steps"] >= d["step"] for d in steps)
    assert all(d["trained_tokens"] > 0 for d in steps)
    assert any("valid_loss" in d for d in data)  # the validation file's loss
    first, last = min(steps, key=lambda d: d["step"]), max(steps, key=lambda d: d["step"])
    assert last["train_loss"] < first["train_loss"]
    assert any(e.message.startswith("Step ") and "training loss=" in e.message for e in metrics)
    messages = [e.message for e in reversed(events) if e.type == "message"]
    order = ["Created fine-tuning job", "Validating training file", "Files validated",
             "Fine-tuning job started", "Fine-tuning job paused", "Fine-tuning job resumed",
             "New fine-tuned model created", "The job has successfully completed"]  # fmt: skip
    at = [next(i for i, m in enumerate(messages) if m.startswith(o)) for o in order]
    assert at == sorted(at), messages


def test_events_page_with_after(env: TenantServer, finished: Finished) -> None:
    client = env.client()
    page = client.fine_tuning.jobs.list_events(finished.job.id, limit=2)
    assert [e.id for e in page.data] == [e.id for e in finished.events[:2]] and page.has_more
    after = client.fine_tuning.jobs.list_events(finished.job.id, limit=2, after=page.data[-1].id)
    assert [e.id for e in after.data] == [e.id for e in finished.events[2:4]]


def test_checkpoints_and_the_results_file(env: TenantServer, finished: Finished) -> None:
    client = env.client()
    assert finished.paused_checkpoints, "pausing saves a checkpoint"
    kept = client.fine_tuning.jobs.checkpoints.list(finished.job.id).data
    steps = [c.step_number for c in kept]
    assert steps == sorted(steps, reverse=True) and 1 <= len(steps) <= 3
    for c in kept:
        assert c.fine_tuning_job_id == finished.job.id
        assert (
            c.fine_tuned_model_checkpoint
            == f"{finished.job.fine_tuned_model}:ckpt-step-{c.step_number}"
        )
        assert c.metrics.step == c.step_number
    (results,) = finished.job.result_files
    meta = client.files.retrieve(results)
    assert meta.purpose == "fine-tune-results"
    rows = list(csv.DictReader(io.StringIO(client.files.content(results).text)))
    assert rows and all(r["step"] for r in rows)


def test_jobs_list_and_other_tenants(env: TenantServer, finished: Finished) -> None:
    acme, globex = env.client("acme"), env.client("globex")
    job_id = finished.job.id
    assert job_id in [j.id for j in acme.fine_tuning.jobs.list()]
    assert [j.id for j in acme.fine_tuning.jobs.list(metadata={"team": "docs"})] == [job_id]
    assert [j.id for j in acme.fine_tuning.jobs.list(metadata={"team": "x"})] == []
    assert [j.id for j in globex.fine_tuning.jobs.list()] == []
    for call in (
        globex.fine_tuning.jobs.retrieve,
        globex.fine_tuning.jobs.cancel,
        globex.fine_tuning.jobs.pause,
        globex.fine_tuning.jobs.list_events,
        globex.fine_tuning.jobs.checkpoints.list,
    ):
        with pytest.raises(openai.NotFoundError):
            call(job_id)
    # Another tenant's file cannot be trained on either.
    with pytest.raises(openai.NotFoundError):
        globex.fine_tuning.jobs.create(model=BUNDLED, training_file=finished.job.training_file)


def test_a_finished_job_cannot_be_cancelled_paused_or_resumed(
    env: TenantServer, finished: Finished
) -> None:
    jobs = env.client().fine_tuning.jobs
    for call in (jobs.cancel, jobs.pause, jobs.resume):
        with pytest.raises(openai.BadRequestError):
            call(finished.job.id)


def test_cancel_stops_the_training_job(env: TenantServer, finished: Finished) -> None:
    client = env.client()
    train = client.files.create(file=("t.jsonl", teaching_file(ASKS)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model=BUNDLED, training_file=train.id, hyperparameters={"n_epochs": 50}
    )
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.fine_tuned_model is None
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"  # idempotent
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.resume(job.id)
    states = [json.loads(p.read_text())["state"] for p in (env.home / "jobs").glob("*/status.json")]
    assert sorted(states) == ["cancelled", "succeeded"]  # the train job stopped too
    events = [e.message for e in client.fine_tuning.jobs.list_events(job.id).data]
    assert "Fine-tuning job cancelled" in events


def _refused(
    env: TenantServer, status: int, code: str | None, param: str | None, **body: Any
) -> None:
    client = env.client()
    with pytest.raises(openai.APIStatusError) as info:
        client.fine_tuning.jobs.create(**body)
    err = info.value.body
    assert info.value.status_code == status, err
    assert isinstance(err, dict) and (err["code"], err["param"]) == (code, param), err


def test_what_openclone_cannot_do_is_refused_by_name(env: TenantServer) -> None:
    client = env.client()
    train = client.files.create(file=("t.jsonl", teaching_file(ASKS[:3])), purpose="fine-tune")
    requests = client.files.create(
        file=(
            "b.jsonl",
            b'{"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {}}\n',
        ),
        purpose="batch",
    )
    ok = {"model": BUNDLED, "training_file": train.id}
    dpo = {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1}}}
    _refused(env, 400, "unsupported_parameter", "method.type", **ok, method=dpo)
    _refused(
        env, 400, "unsupported_parameter", "method.type", **ok, method={"type": "reinforcement"}
    )
    _refused(env, 400, "unsupported_parameter", "hyperparameters.beta", **ok,
             hyperparameters={"beta": 0.1})  # fmt: skip
    _refused(env, 400, "unsupported_parameter", "method.supervised.hyperparameters.prompt_loss",
             **ok, method={"type": "supervised",
                           "supervised": {"hyperparameters": {"prompt_loss": 1}}})  # fmt: skip
    _refused(env, 400, "unsupported_parameter", "integrations", **ok,
             integrations=[{"type": "wandb", "wandb": {"project": "p"}}])  # fmt: skip
    _refused(env, 400, "unsupported_parameter", "colour", **ok, extra_body={"colour": "blue"})
    _refused(env, 400, None, "hyperparameters", **ok, hyperparameters={"n_epochs": 0})
    _refused(env, 400, None, "hyperparameters", **ok, hyperparameters={"n_epochs": 2},
             method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 3}}})  # fmt: skip
    _refused(env, 400, "model_not_available", "model", model="gpt-4o-mini", training_file=train.id)
    _refused(env, 400, None, "suffix", **ok, suffix="no spaces allowed")
    _refused(env, 400, "invalid_file_purpose", "training_file", model=BUNDLED,
             training_file=requests.id)  # fmt: skip
    _refused(env, 404, None, "training_file", model=BUNDLED, training_file="file-nope")
    _refused(env, 404, None, "validation_file", **ok, validation_file="file-nope")
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-nope")
