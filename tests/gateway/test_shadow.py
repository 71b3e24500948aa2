"""Shadow and canary on a real server with the bundled model, through the openai SDK.

The bundled model is incumbent and candidate alike: versions 1 and 2 of a registry name
both serve it. The canary that fails is honest: a version whose upstream is a closed port
on loopback. Generations are a few tokens; the judge is the same model, over HTTP.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import openai
import pytest
from conftest import BUNDLED, Server, free_port, start_server, stop_server
from loop.helpers import STANDIN_ANSWER, standin_teacher
from sqlalchemy import select
from standins import JSONHandler, chat_reply, loopback
from typer.testing import CliRunner

from openclone.cli import app
from openclone.config import load_settings
from openclone.loop.config import LoopConfig
from openclone.loop.context import StepContext
from openclone.loop.judge import decide
from openclone.loop.shadow import canary, shadow
from openclone.loop.state import claim_run
from openclone.registry.splits import start_canary
from openclone.registry.versions import decisions, get_version, promote, register
from openclone.routing.splits import sticky_fraction
from openclone.store import Store, open_store
from openclone.store.splits import arm_totals, find_active, get_split, list_splits, read_pairs
from openclone.store.tables import Capture

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    """A server whose store has ``shadowbot``, ``quietbot`` and ``canarybot`` (version 1
    serving, version 2 a candidate; canarybot@3 an upstream nobody listens on), and
    ``qualitybot`` (version 1 the bundled model, version 2 a stand-in that answers every
    question with the same sentence)."""
    workdir = tmp_path_factory.mktemp("shadow")
    home = workdir / "home"
    with standin_teacher() as standin:
        store = open_store(None, home)
        try:
            for name in ("shadowbot", "quietbot", "canarybot", "qualitybot"):
                register(store, name, BUNDLED)
                if name != "qualitybot":
                    register(store, name, BUNDLED)
                promote(store, name, 1)
            dead = {"base_url": f"http://127.0.0.1:{free_port()}/v1", "model": BUNDLED,
                    "connect_timeout": 2}  # fmt: skip
            register(store, "canarybot", engine={"engine": "openai", "params": dead})
            same = {"base_url": standin.url, "model": "standin"}
            register(store, "qualitybot", engine={"engine": "openai", "params": same})
        finally:
            store.close()
        yield from _serve(workdir, home)


def _serve(workdir: Path, home: Path) -> Iterator[tuple[Server, Path]]:
    config = f"""
default_model = "{BUNDLED}"
health_interval = 0.5
shadow_concurrency = 1
down_cooldown = 30

[[models]]
name = "{BUNDLED}"
engine = "llamacpp"
params = {{ n_ctx = 2048 }}
"""
    server = start_server(config, workdir)
    try:
        yield server, home
    finally:
        stop_server(server)


@pytest.fixture
def store(live: tuple[Server, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.setenv("OPENCLONE_HOME", str(live[1]))  # the CLI and the loop use its store
    s = open_store(None, live[1])
    yield s
    s.close()


def _client(server: Server, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0,
                         default_headers=headers)  # fmt: skip


def _until(what: Callable[[], Any], seconds: float = 60, every: float = 0.1) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def _ask(client: openai.OpenAI, text: str, **extra: Any) -> tuple[str, str, str]:
    """(answer, capture id, served version) of one chat request for shadowbot."""
    raw = client.chat.completions.with_raw_response.create(
        model="shadowbot",
        messages=[{"role": "user", "content": text}],
        max_tokens=4,
        temperature=0,
        **extra,
    )
    reply = raw.parse()
    assert reply.model == "shadowbot@1" == raw.headers["x-openclone-model-version"]
    return (
        (reply.choices[0].message.content or ""),
        raw.headers["x-openclone-capture-id"],
        reply.model,
    )


def _stream(client: openai.OpenAI, text: str) -> str:
    """The capture id of one streamed chat request for shadowbot."""
    raw = client.chat.completions.with_raw_response.create(
        model="shadowbot",
        messages=[{"role": "user", "content": text}],
        stream=True,
        max_tokens=4,
        temperature=0,
    )
    chunks = list(raw.parse())
    assert {c.model for c in chunks} == {"shadowbot@1"}
    return str(raw.headers["x-openclone-capture-id"])


def test_a_shadow_answers_live_requests_in_the_background_and_the_loop_judges_them(
    live: tuple[Server, Path], store: Store, tmp_path: Path
) -> None:
    server, _ = live
    done = runner.invoke(app, ["registry", "shadow", "shadowbot", "--candidate", "shadowbot@2",
                               "--share", "1", "--budget", "3"])  # fmt: skip
    assert done.exit_code == 0, done.output
    split = find_active(store, "shadowbot", "shadow")
    assert split is not None and split.budget == 3
    consenting, refusing = (
        _client(server, **{"X-OpenClone-Train": "true"}),
        _client(server, **{"X-OpenClone-Train": "false"}),
    )

    def pairs() -> list[Any]:
        return read_pairs(store, split.id)

    def settled() -> int:
        """Pairs stored once no shadow request is left running (none stored for 2 s)."""
        seen, since = len(pairs()), time.monotonic()
        while time.monotonic() - since < 2:
            time.sleep(0.2)
            if len(pairs()) != seen:
                seen, since = len(pairs()), time.monotonic()
        return seen

    answers: dict[str, str] = {}

    def ask(text: str) -> str:
        answer, capture, _ = _ask(consenting, text)
        answers[capture] = answer
        return capture

    # Until the gateway has read the shadow (once a second), nothing is shadowed.
    for i in range(100):
        ask(f"Say hello number {i}.")
        if pairs():
            break
    assert settled() <= 2  # one more at most: shadow_concurrency is 1
    _, refused, _ = _ask(refusing, "Say hello to nobody.")  # no consent: never shadowed
    streamed = _stream(consenting, "Say hello in a stream.")
    _until(lambda: streamed in {p.capture_id for p in pairs()})
    while settled() < 3:
        ask(f"Say hello number {len(answers)}.")
    for i in range(3):  # the budget is spent: these are not shadowed
        ask(f"Say goodbye number {i}.")

    kept = pairs()
    assert settled() == len(kept) == 3
    assert refused not in {p.capture_id for p in kept}
    assert streamed in {p.capture_id for p in kept}
    for pair in kept:
        assert (pair.live_model, pair.shadow_model) == ("shadowbot@1", "shadowbot@2")
        assert pair.shadow_error is None and pair.shadow_response is not None
        assert pair.shadow_response["model"] == "shadowbot@2"
        live_text = pair.live_response["choices"][0]["message"]["content"]
        if pair.capture_id in answers:  # what the caller got is the live answer, untouched
            assert live_text == answers[pair.capture_id]

    # The loop's shadow step finds the shadow its candidate is in, and judges the pairs.
    config = tmp_path / "openclone.toml"
    config.write_text(
        f'[[models]]\nname = "judge"\nengine = "openai"\n'
        f'params = {{ base_url = "{server.base_url}", model = "{BUNDLED}" }}\n'
    )
    settings = load_settings(config)
    loop = LoopConfig(name="shadowloop", model="shadowbot", tenant="default", teacher="judge",
                      judge="judge", shadow_pairs=3, shadow_share=1.0, shadow_wait=30,
                      eval_max_tokens=12, concurrency=2)  # fmt: skip
    ctx = _context(loop, settings, store, tmp_path, "shadowbot")
    result = shadow(ctx)

    out = result.outputs
    assert out["status"] == "judged" and out["split"] == split.id
    assert (out["candidate"], out["reference"]) == ("shadowbot@2", "shadowbot@1")
    assert result.counts["pairs"] == 3 and 1 <= out["n"] <= 3
    assert out["ci_low"] <= out["win_rate"] <= out["ci_high"]
    report = json.loads(Path(out["report"]).read_text())
    assert [r["pair"] for r in report["rows"]] == [p.id for p in kept]
    ended = get_split(store, split.id)
    assert ended is not None and ended.state == "finished"


def _context(
    loop: LoopConfig, settings: Any, store: Store, tmp_path: Path, name: str
) -> StepContext:
    run = claim_run(store, loop)
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    outputs: dict[str, dict[str, Any]] = {"train": {"candidate": f"{name}@2", "version": 2},
               "evaluate": {"incumbent": f"{name}@1", "reports": {}}}  # fmt: skip
    return StepContext(loop, settings, store, run, run_dir, outputs)


def test_a_shadow_without_traffic_is_skipped_and_the_decision_says_so(
    live: tuple[Server, Path], store: Store, tmp_path: Path
) -> None:
    settings = load_settings(None)
    loop = LoopConfig(name="quietloop", model="quietbot", tenant="default", teacher=BUNDLED,
                      shadow_pairs=2, shadow_wait=0.5)  # fmt: skip
    ctx = _context(loop, settings, store, tmp_path, "quietbot")
    started = time.monotonic()
    result = shadow(ctx)
    assert time.monotonic() - started < 10  # the wait is bounded, never forever
    assert result.outputs["status"] == "skipped: no traffic" and result.counts["pairs"] == 0
    (split,) = list_splits(store, "quietbot")
    assert split.state == "finished"

    even = {"candidate": "quietbot@2", "win_rate": 0.5, "ci_low": 0.3, "ci_high": 0.7, "n": 4}
    report = tmp_path / "report.json"
    report.write_text(json.dumps(even))
    summary = {**even, "report": str(report)}
    ctx.outputs["evaluate"]["reports"] = {"incumbent": summary, "teacher": summary}
    ctx.outputs["shadow"] = result.outputs
    ctx.outputs["canary"] = {"status": "off"}
    decision = decide(ctx).decision
    assert decision is not None and decision.action == "promote"
    assert "shadow skipped: no traffic" in decision.reason


def _chat(client: openai.OpenAI, conversation: str) -> tuple[str, str]:
    raw = client.chat.completions.with_raw_response.create(
        model="canarybot", messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0,
        extra_headers={"X-OpenClone-Conversation": conversation},
    )  # fmt: skip
    return raw.headers["x-openclone-model-version"], raw.headers["x-openclone-capture-id"]


def test_a_canary_serves_its_share_sticky_per_conversation_and_captures_name_the_version(
    live: tuple[Server, Path], store: Store
) -> None:
    server, _ = live
    split = start_canary(store, "canarybot", "canarybot@2", share=0.5)
    by_side: dict[bool, list[str]] = {True: [], False: []}
    for i in range(200):
        conv = f"conv-{i}"
        by_side[sticky_fraction(split.id, f"default/{conv}") < 0.5].append(conv)
    on_canary, on_incumbent = by_side[True][:2], by_side[False][:2]
    client = _client(server)
    _until(lambda: _chat(client, on_canary[0])[0] == "canarybot@2", every=0.3)

    served: dict[str, str] = {}
    for conv in [*on_canary, *on_incumbent] * 2:
        version, capture = _chat(client, conv)
        assert version == ("canarybot@2" if conv in on_canary else "canarybot@1"), conv
        served[capture] = version

    def captured() -> dict[str, str]:
        with store.session() as s:
            rows = s.execute(select(Capture.id, Capture.model).where(Capture.id.in_(served)))
            return dict(rows.all())

    assert _until(lambda: len(captured()) == len(served) and captured()) == served


def _chat_stream(client: openai.OpenAI, conversation: str) -> tuple[str, str]:
    raw = client.chat.completions.with_raw_response.create(
        model="canarybot", messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0,
        stream=True, extra_headers={"X-OpenClone-Conversation": conversation},
    )  # fmt: skip
    chunks = list(raw.parse())
    assert chunks and {c.model for c in chunks} == {raw.headers["x-openclone-model-version"]}
    return raw.headers["x-openclone-model-version"], raw.headers["x-openclone-capture-id"]


def test_a_failing_canary_is_rolled_back_and_its_callers_never_see_it_fail(
    live: tuple[Server, Path], store: Store
) -> None:
    server, _ = live
    split = start_canary(store, "canarybot", "canarybot@3", share=1.0,
                         policy={"min_requests": 3})  # fmt: skip
    client = _client(server)
    asked = 0

    def rolled_back() -> bool:
        nonlocal asked
        # The canary fails before answering: the incumbent answers instead (or, until the
        # gateway's next refresh, the canary an earlier test left, which this one replaced).
        ask = _chat if asked % 2 else _chat_stream  # streams fail over before their first byte
        assert ask(client, f"conv-{asked}")[0] in ("canarybot@1", "canarybot@2")
        asked += 1
        found = get_split(store, split.id)
        return found is not None and found.state == "rolled_back"

    _until(rolled_back, every=0.2)
    found = get_split(store, split.id)
    assert found is not None and "error rate 100%" in found.reason
    arms = arm_totals(store, [split.id])[split.id]
    assert arms["canary"].errors >= 3  # each failure counted against the canary
    assert any(d["action"] == "canary-rollback" and d["version"] == 3
               for d in decisions(store, "canarybot"))  # fmt: skip
    assert get_version(store, "canarybot").version == 1  # the alias never moved
    _until(lambda: _chat(client, "after")[0] == "canarybot@1", every=0.3)


class _PickyJudge(JSONHandler):
    """A stand-in judge (NOT a model): the answer that is not the stand-in's stock sentence
    wins, in either order."""

    def do_POST(self) -> None:
        body = self.read_json()
        asked = body["messages"][-1]["content"]
        first = asked.split("<answer_a>", 1)[1].split("</answer_a>", 1)[0]
        verdict = "B" if STANDIN_ANSWER in first else "A"
        self.send_json(chat_reply(body["model"], json.dumps({"verdict": verdict}), 1, 1))


def test_a_canary_judged_worse_than_the_incumbent_is_rolled_back_by_the_loop(
    live: tuple[Server, Path], store: Store, tmp_path: Path
) -> None:
    server, _ = live
    with loopback(_PickyJudge) as judge:
        config = tmp_path / "openclone.toml"
        config.write_text(
            f'[[models]]\nname = "judge"\nengine = "openai"\n'
            f'params = {{ base_url = "{judge}/v1", model = "picky" }}\n'
        )
        loop = LoopConfig(name="qualityloop", model="qualitybot", tenant="default",
                          teacher="judge", judge="judge", canary_share=0.2, canary_requests=500,
                          canary_wait=300, canary_pairs=6, concurrency=2)  # fmt: skip
        ctx = _context(loop, load_settings(config), store, tmp_path, "qualitybot")
        even = {"candidate": "qualitybot@2", "win_rate": 0.5, "ci_low": 0.3, "ci_high": 0.7}
        report = tmp_path / "report.json"
        report.write_text(json.dumps(even))  # the offline evaluation let it through
        ctx.outputs["evaluate"]["reports"] = {"incumbent": {**even, "report": str(report)}}
        done: dict[str, Any] = {}
        step = threading.Thread(target=lambda: done.update(result=canary(ctx)))
        step.start()
        split = _until(lambda: find_active(store, "qualitybot", "canary"))
        # Conversations the canary's 20% takes; one request at a time, each waiting for its
        # pair, so none is turned away as busy: every canary request is paired (not 20% of
        # them again) until the budget or the rollback.
        convs = [f"c{i}" for i in range(400) if sticky_fraction(split.id, f"default/c{i}") < 0.2]
        client = _client(server, **{"X-OpenClone-Train": "true"})
        answers: dict[str, str] = {}

        def ask(conv: str) -> str:
            raw = client.chat.completions.with_raw_response.create(
                model="qualitybot", messages=[{"role": "user", "content": f"Say hi, {conv}."}],
                max_tokens=6, temperature=0, extra_headers={"X-OpenClone-Conversation": conv},
            )  # fmt: skip
            answers[raw.headers["x-openclone-model-version"]] = (
                raw.parse().choices[0].message.content or ""
            )
            return str(raw.headers["x-openclone-model-version"])

        _until(lambda: ask(convs[0]) == "qualitybot@2", every=0.3)  # the gateway read it

        def paired(before: int) -> bool:
            return not step.is_alive() or (get_split(store, split.id) or split).pairs > before

        for conv in convs[1:8]:
            before = (get_split(store, split.id) or split).pairs
            assert ask(conv) == "qualitybot@2"
            _until(partial(paired, before))
            if not step.is_alive():
                break
        step.join(timeout=120)
    assert not step.is_alive()

    # Once the gateway read the canary (within a second) callers got the canary's answer;
    # the incumbent answered the same requests in the background only, and the judge
    # preferred it every time.
    assert answers.get("qualitybot@2") == STANDIN_ANSWER
    result = done["result"]
    out = result.outputs
    assert out["state"] == "rolled_back" and out["status"].startswith("rolled back: judged quality")
    assert out["quality"]["n"] >= 5 and out["quality"]["win_rate"] == 0.0
    assert out["quality"]["ci_high"] < 0.5
    split = get_split(store, out["split"])
    assert split is not None and split.kind == "canary" and split.state == "rolled_back"
    pairs = read_pairs(store, split.id)
    assert 5 <= len(pairs) <= 6
    assert {(p.live_model, p.shadow_model) for p in pairs} == {("qualitybot@2", "qualitybot@1")}
    assert all(p.shadow_error is None and p.shadow_response is not None for p in pairs)
    (rollback,) = [d for d in decisions(store, "qualitybot") if d["action"] == "canary-rollback"]
    assert rollback["actor"] == "loop:qualityloop" and rollback["version"] == 2
    assert get_version(store, "qualitybot").version == 1  # the alias never moved
