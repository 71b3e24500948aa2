"""A run is claimed by exactly one process, its decision is never lost, and the cadence
counts from when the last run ended, on new captures, and faster before a shutdown."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, update
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from loop.helpers import MINIMAL, add_captures, write_config
from openclone.cli import app
from openclone.config import load_settings
from openclone.loop import get_loop, schedule
from openclone.loop.config import LoopError
from openclone.loop.schedule import due
from openclone.loop.state import (
    LEASE,
    RunTaken,
    claim_run,
    end_run,
    get_run,
    here,
    record_step,
)
from openclone.store import Store, open_store
from openclone.store.review import register, set_state
from openclone.store.tables import LoopRun

runner = CliRunner()


def _cli(*args: str) -> Any:
    return runner.invoke(app, list(args))


def _claim_raced(store: Store, config_path: Path) -> tuple[Exception | None, str]:
    """Claim the loop's run while another claim lands between our read and our write;
    returns what our claim raised and the id of the run the other claim got."""
    settings = load_settings(config_path)
    loop = get_loop(settings, "support")
    other = open_store(settings)
    theirs: list[str] = []

    def race(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not theirs and statement.startswith("SELECT") and "FROM loop_runs" in statement:
            theirs.append(claim_run(other, loop).id)  # the other process wins the race

    event.listen(store.engine, "after_cursor_execute", race)
    try:
        claim_run(store, loop)
    except Exception as exc:
        return exc, theirs[0]
    finally:
        event.remove(store.engine, "after_cursor_execute", race)
        other.close()
    return None, theirs[0]


def test_two_claims_of_a_new_run_have_one_winner(tmp_path: Path) -> None:
    config = write_config(tmp_path / "openclone.toml")
    store = open_store(load_settings(config))
    try:
        raised, theirs = _claim_raced(store, config)
        assert isinstance(raised, RunTaken)
        assert "run 1 of loop 'support' is being run by another process" in str(raised)
        assert get_run(store, theirs).status == "running"
    finally:
        store.close()


def test_two_claims_of_a_crashed_run_have_one_winner(tmp_path: Path) -> None:
    config = write_config(tmp_path / "openclone.toml")
    store = open_store(load_settings(config))
    try:
        first = claim_run(store, get_loop(load_settings(config), "support"))
        with store.session() as s:  # its process died mid-run
            s.execute(update(LoopRun).where(LoopRun.id == first.id).values(pid=2**22 + 7))
        raised, theirs = _claim_raced(store, config)
        assert isinstance(raised, RunTaken), raised
        assert "run 1 of loop 'support' is being run by another process" in str(raised)
        assert theirs == first.id
    finally:
        store.close()


def test_a_step_and_its_decision_are_recorded_together(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path / "openclone.toml"))
    store = open_store(settings)
    try:
        run = claim_run(store, get_loop(settings, "support"))
        record_step(store, run.id, "collect", "done", action="skip", reason="not enough data",
                    candidate="support@3")  # fmt: skip
        after = get_run(store, run.id)
        assert (after.action, after.candidate) == ("skip", "support@3")
        assert after.step("collect") is not None
    finally:
        store.close()


def _set_run(config: Path, **values: float) -> None:
    store = open_store(load_settings(config))
    try:
        with store.session() as s:
            s.execute(update(LoopRun).values(**values))
    finally:
        store.close()


def _started(config: Path) -> str:
    result = _cli("loop", "start", "--once", "--config", str(config))
    assert result.exit_code == 0, result.output
    return str(result.stderr)


def test_a_long_run_does_not_make_the_next_one_due_at_once(tmp_path: Path) -> None:
    config = write_config(tmp_path / "openclone.toml")
    add_captures(config, 2)
    assert "1 run(s) started" in _started(config)
    now = time.time()
    _set_run(config, created=now - 3 * 86400, ended=now - 3600)  # began 3 days ago, ran long
    assert "0 run(s) started" in _started(config)
    _set_run(config, ended=now - 86400 - 60)  # ended more than `every` ago
    assert "1 run(s) started" in _started(config)


def test_a_loop_runs_on_new_captures(tmp_path: Path) -> None:
    text = MINIMAL.replace('every = "1d"', 'every = "off"\nevery_captures = 3')
    config = write_config(tmp_path / "openclone.toml", text)
    add_captures(config, 2)
    assert "1 run(s) started" in _started(config)  # a first run at once (too little data)
    assert "0 run(s) started" in _started(config)  # 2 new captures of 3
    add_captures(config, 1)
    status = json.loads(_cli("loop", "status", "--json", "--config", str(config)).stdout)
    assert (status["loops"][0]["new_captures"], status["loops"][0]["next_due"]) == (3, None)
    assert "1 run(s) started" in _started(config)


@pytest.mark.parametrize(("days", "due"), [(10, True), (60, False)])
def test_a_near_shutdown_halves_the_period(tmp_path: Path, days: int, due: bool) -> None:
    shutdown = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=days)
    text = f'[deprecations]\n"smollm2-135m-instruct" = {shutdown.isoformat()}\n' + MINIMAL
    config = write_config(tmp_path / "openclone.toml", text)
    add_captures(config, 2)
    assert "1 run(s) started" in _started(config)
    _set_run(config, ended=time.time() - 13 * 3600)  # over half a day, under a day

    assert f"{int(due)} run(s) started" in _started(config)
    status = json.loads(_cli("loop", "status", "--json", "--config", str(config)).stdout)
    watch = status["loops"][0]["deprecation"]
    assert (watch["shutdown"], watch["days_left"], watch["near"]) == (str(shutdown), days, due)
    assert watch["student_win_rate"] is None  # no evaluation yet


def test_end_run_records_when_a_failed_run_ended(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path / "openclone.toml"))
    store = open_store(settings)
    try:
        run = claim_run(store, get_loop(settings, "support"))
        ended = end_run(store, run.id, "failed", error="boom")
        assert ended.ended is not None and ended.finished is None
    finally:
        store.close()


@pytest.mark.parametrize(("lease_left", "continued"), [(-1.0, True), (60.0, False)])
def test_a_run_of_a_process_gone_elsewhere_is_continued_once_its_lease_lapsed(
    tmp_path: Path, lease_left: float, continued: bool
) -> None:
    settings = load_settings(write_config(tmp_path / "openclone.toml"))
    loop = get_loop(settings, "support")
    store = open_store(settings)
    try:
        first = claim_run(store, loop)
        with store.session() as s:  # its container is gone: another hostname, no renewals
            s.execute(update(LoopRun).values(host="container-before-restart", pid=1,
                                             lease_until=time.time() + lease_left))  # fmt: skip
        if continued:
            assert claim_run(store, loop).id == first.id
        else:
            with pytest.raises(LoopError, match="is running in process 1 on container-before"):
                claim_run(store, loop)
    finally:
        store.close()


def _dead_pid() -> int:
    """A pid no process has on this host now (a child started and reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_run_whose_process_died_is_due_at_once_but_not_forever(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path / "openclone.toml"))  # every = "1d"
    loop = get_loop(settings, "support")
    store = open_store(settings)
    host = here()

    def held_by(**values: Any) -> None:
        with store.session() as s:
            s.execute(update(LoopRun).values(**values))

    try:
        run = claim_run(store, loop)
        now = time.time()
        assert due(store, [loop], now, settings) == []  # this very process runs it
        held_by(pid=os.getpid() + 1_000_000, host="elsewhere", lease_until=now + 30)
        assert due(store, [loop], now, settings) == []  # a live lease on another host
        held_by(lease_until=now - 30)  # lapsed, but not a whole lease ago: maybe a slow db
        assert due(store, [loop], now, settings) == []
        held_by(lease_until=now - 2 * LEASE)
        assert due(store, [loop], now, settings) == [loop]
        # Another container with this hostname (its own pid namespace): its pid says nothing
        # here, so its live lease holds the run.
        other = here().split(" ")[0] + " pid:[1]"
        held_by(pid=_dead_pid(), host=other, lease_until=now + 30)
        assert due(store, [loop], now, settings) == []

        # Killed on this host: due at once, taken over (counted), killed again, due again...
        for takeover in (1, 2):
            held_by(pid=_dead_pid(), host=host, lease_until=time.time() + LEASE)
            assert due(store, [loop], time.time(), settings) == [loop]
            assert claim_run(store, loop).takeovers == takeover
        # ...and once it has killed its process twice, it waits for its next turn.
        held_by(pid=_dead_pid(), host=host, lease_until=time.time() + LEASE)
        assert due(store, [loop], time.time(), settings) == []
        assert get_run(store, run.id).takeovers == 2
    finally:
        store.close()


def test_a_run_waiting_for_review_is_due_only_once_its_review_is_done(tmp_path: Path) -> None:
    text = MINIMAL.replace('every = "1d"', 'every = "off"\nevery_captures = 1\nreview = true')
    settings = load_settings(write_config(tmp_path / "openclone.toml", text))
    loop = get_loop(settings, "support")
    rows = tmp_path / "distilled.jsonl"
    rows.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"},
                                             {"role": "assistant", "content": "Hello"}]}) + "\n")  # fmt: skip
    add_captures(tmp_path / "openclone.toml", 3)  # enough new captures to be due by count
    store = open_store(settings)
    try:
        run = claim_run(store, loop)
        info = register(store, rows, actor="loop:support", tenant="acme")
        record_step(store, run.id, "review", "waiting", outputs={"review_dataset": info.id})
        end_run(store, run.id, "waiting", error="waiting for review: 1 pending")
        assert due(store, [loop], time.time(), settings) == []
        set_state(store, info.id, "approved", actor="ana", rows=[0])
        assert due(store, [loop], time.time(), settings) == [loop]
    finally:
        store.close()


def test_a_failed_poll_does_not_stop_the_scheduler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path / "openclone.toml")
    add_captures(config, 1)
    settings = load_settings(config)
    calls: list[int] = []

    def flaky(settings: Any) -> Store:  # the database is away for the first poll
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("SELECT 1", {}, Exception("database is locked"))
        return open_store(settings)

    monkeypatch.setattr(schedule, "open_store", flaky)
    stop = threading.Event()
    said: list[str] = []

    def say(line: str) -> None:
        said.append(line)
        if line.startswith("support: run"):
            stop.set()

    assert schedule.serve(settings, say, poll=0.01, stop=stop) == 1
    assert len(calls) == 2, said
    assert any("support: run 1 finished" in line for line in said), said
