"""A fine-tuned model is its tenant's: listed and served to that tenant and to admin keys,
"not found" to any other, on every endpoint that takes a model; a model the operator
registered is everyone's. A real server; the job's record is written directly (training is
tests/gateway/test_fine_tuning_api.py's), so this costs seconds."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from conftest import BUNDLED, TenantServer, start_tenant_server, stop_server
from gateway.test_batches_api import lines, upload, wait
from openai import OpenAI

from openclone.registry.versions import register, set_alias
from openclone.store import open_store
from openclone.store.fine_tuning import ERASED_OWNER, insert_job, model_owners
from openclone.store.keys import create_key
from openclone.store.privacy import erase
from openclone.store.tables import FineTuningJob, now

pytestmark = pytest.mark.slow

FT = f"ft:{BUNDLED}:acme:act:1a2b3c4d"
RUN = "ft-act-1a2b3c4d"
HOUSE = "house-model"  # trained by the operator (`openclone train`): no tenant's
SAY = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "temperature": 0}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TenantServer, OpenAI]]:
    root = tmp_path_factory.mktemp("ft-access")
    store = open_store(home=root / "home")
    try:
        insert_job(store, "acme", FineTuningJob(
            id="ftjob-access", model=BUNDLED, training_file="file-x", seed=1,
            hyperparameters={}, method={"type": "supervised"}, status="succeeded",
            ft_name=FT, run_name=RUN, fine_tuned_model=FT, steps_seen=0, result_files=[],
            paths=[], created=now(),
        ), [])  # fmt: skip
        for name in (FT, RUN, HOUSE):  # as a finished job (and the CLI) registers them
            set_alias(store, name, register(store, name, BUNDLED).version)
        admin = create_key(store, "globex", "root", admin=True)[1]
    finally:
        store.close()
    env = start_tenant_server(root)
    yield env, OpenAI(base_url=env.server.base_url, api_key=admin, max_retries=0)
    stop_server(env.server)


def _ids(client: OpenAI) -> set[str]:
    return {m.id for m in client.models.list().data}


def test_the_model_list_shows_a_fine_tune_to_its_tenant_only(
    env: tuple[TenantServer, OpenAI],
) -> None:
    ts, admin = env
    mine = {FT, f"{FT}@1", RUN, f"{RUN}@1"}
    assert mine | {HOUSE, BUNDLED} <= _ids(ts.client("acme"))
    others = _ids(ts.client("globex"))
    assert {HOUSE, BUNDLED} <= others and not mine & others
    assert mine <= _ids(admin)
    assert ts.client("acme").models.retrieve(FT).id == FT
    with pytest.raises(openai.NotFoundError) as exc:
        ts.client("globex").models.retrieve(FT)
    assert exc.value.code == "model_not_found"


def _calls(client: OpenAI) -> dict[str, Callable[[str], Any]]:
    return {
        "chat": lambda m: client.chat.completions.create(model=m, **SAY),  # type: ignore[arg-type]
        "stream": lambda m: list(
            client.chat.completions.create(model=m, stream=True, **SAY)  # type: ignore[call-overload]
        ),
        "completions": lambda m: client.completions.create(model=m, prompt="Hi", max_tokens=2),
        "responses": lambda m: client.responses.create(model=m, input="Hi", max_output_tokens=16),
        "embeddings": lambda m: client.embeddings.create(model=m, input="Hi"),
    }


def test_another_tenant_is_told_a_fine_tune_does_not_exist(
    env: tuple[TenantServer, OpenAI],
) -> None:
    ts, admin = env
    for endpoint, call in _calls(ts.client("globex")).items():
        # Its ft: name, its registry name, a pinned version, the adapter it serves.
        for name in (FT, RUN, f"{RUN}@1", f"{BUNDLED}:{RUN}"):
            with pytest.raises(openai.NotFoundError) as exc:
                call(name)
            err = exc.value
            assert (err.code, err.param) == ("model_not_found", "model"), (endpoint, name)
            assert f"The model '{name}' does not exist" in str(err.message)
        call(HOUSE)  # the operator's model is everyone's
    # A near miss of the fine-tune's name: the "did you mean" hint must not name it to
    # another tenant, though it still names everyone's models.
    chat = _calls(ts.client("globex"))["chat"]
    for near, hidden in ((RUN[:-1], RUN), (FT.upper(), FT)):
        with pytest.raises(openai.NotFoundError) as exc:
            chat(near)
        assert hidden not in str(exc.value.message)
    with pytest.raises(openai.NotFoundError) as exc:
        chat(HOUSE.upper())
    assert f"Did you mean '{HOUSE}'?" in str(exc.value.message)
    for call in _calls(ts.client("acme")).values():
        call(FT)
        call(RUN)
    _calls(admin)["chat"](FT)


def test_a_batch_line_for_another_tenants_fine_tune_fails_as_not_found(
    env: tuple[TenantServer, OpenAI],
) -> None:
    ts, _ = env
    client = ts.client("globex")
    rows = [
        {"custom_id": name, "method": "POST", "url": "/v1/embeddings",
         "body": {"model": name, "input": "Hi"}}
        for name in (FT, HOUSE)
    ]  # fmt: skip
    batch = client.batches.create(
        input_file_id=upload(client, rows), endpoint="/v1/embeddings", completion_window="24h"
    )
    done = wait(client, batch.id)
    assert done.request_counts is not None and done.request_counts.failed == 1
    [failed] = lines(client, done.error_file_id)
    assert failed["custom_id"] == FT
    assert failed["response"]["status_code"] == 404
    assert failed["response"]["body"]["error"]["code"] == "model_not_found"
    assert [x["custom_id"] for x in lines(client, done.output_file_id)] == [HOUSE]


def test_an_erased_tenants_fine_tune_is_no_one_elses(env: tuple[TenantServer, OpenAI]) -> None:
    # Last in this module: it erases acme's job.
    ts, _ = env
    ts.client("acme").completions.create(model=FT, prompt="Hi", max_tokens=2)
    store = open_store(home=ts.home)
    try:
        erase(store, actor="admin", tenant="acme")
        # The names stay taken, by no tenant: an engine may still hold the adapter.
        owners = model_owners(store)
        assert owners[FT] == owners[RUN] == ERASED_OWNER
    finally:
        store.close()
    globex = ts.client("globex")
    for name in (FT, RUN, f"{RUN}@1", f"{BUNDLED}:{RUN}"):
        deadline = time.monotonic() + 30  # the server's registry and owners refresh
        while True:
            try:
                globex.completions.create(model=name, prompt="Hi", max_tokens=2)
            except openai.NotFoundError as exc:
                assert exc.code == "model_not_found"
                break
            assert time.monotonic() < deadline, f"{name} still served after the erasure"
            time.sleep(0.5)
