"""The deprecation watch reads what upstreams' models lists report (Azure's and
OpenRouter's shapes, from a real HTTP server on loopback): a reported date raises the
loop's cadence and shows in `loop status`, a model missing from its list is gone (0 days
left: its loop on the deprecation cadence), one it lists as deprecated with no date raises
the cadence too, and an upstream that cannot be read changes nothing and fails nothing."""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import update
from standins import JSONHandler, loopback
from typer.testing import CliRunner

from loop.helpers import write_config
from openclone.cli import app
from openclone.config import load_settings
from openclone.loop import get_loop
from openclone.loop.cadence import next_due
from openclone.loop.state import claim_run, end_run
from openclone.loop.upstream_watch import proxied
from openclone.store import open_store
from openclone.store.tables import LoopRun, UpstreamModel

runner = CliRunner()
TODAY = dt.datetime.now(dt.UTC).date()
IN_20 = TODAY + dt.timedelta(days=20)
IN_45 = TODAY + dt.timedelta(days=45)


def _at_noon(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.UTC).timestamp())


# What each upstream lists, in its own shape.
LISTS: dict[str, dict[str, Any]] = {
    "/azure/v1/models": {"object": "list", "data": [
        {"id": "gpt-4o-2024-05-13", "object": "model", "status": "succeeded",
         "lifecycle_status": "deprecating",
         "deprecation": {"fine_tune": _at_noon(TODAY), "inference": _at_noon(IN_20)}},
        {"id": "gpt-35-turbo-0613", "object": "model", "lifecycle_status": "deprecated"},
        {"id": "gpt-4.1", "object": "model", "lifecycle_status": "generally-available",
         "deprecation": {"inference": _at_noon(TODAY + dt.timedelta(days=400))}},
    ]},
    "/openrouter/v1/models": {"data": [
        {"id": "anthropic/claude-3-opus", "name": "Claude 3 Opus", "expiration_date": str(IN_45)},
        {"id": "openai/gpt-4o", "name": "GPT-4o", "expiration_date": None},
    ]},
    # A list in pages (Anthropic-style cursor): the first page says nothing of the rest.
    "/paged/v1/models": {"data": [{"id": "claude-3-5-haiku"}], "has_more": True,
                         "last_id": "claude-3-5-haiku"},
}  # fmt: skip


@dataclass
class Upstreams:
    url: str
    asked: list[str] = field(default_factory=list)


@contextmanager
def upstreams() -> Iterator[Upstreams]:
    """Two OpenAI-compatible upstreams (Azure's and OpenRouter's models lists) on one
    loopback server, counting the lists asked for."""
    asked: list[str] = []

    class Handler(JSONHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            found = self.path in LISTS
            self.send_json(LISTS.get(self.path, {"error": "not found"}), 200 if found else 404)

    with loopback(Handler) as url:
        yield Upstreams(url, asked)


def _config(path: Path, url: str, extra: str = "") -> Path:
    """Three loops, each distilling a proxied model: one Azure reports deprecated (a
    deployment, listed under its base model's id), one OpenRouter dates, one OpenRouter no
    longer lists."""
    loops = "".join(
        f"""
[[loops]]
name = "{name}"
model = "{name}"
tenant = "acme"
teacher = "{teacher}"
student_base = "smollm2-135m-instruct"
judge = "smollm2-135m-instruct"
every = "4d"
"""
        for name, teacher in (("support", "azure-4o"), ("sales", "claude"), ("legacy", "old"))
    )
    return write_config(
        path,
        f"""{extra}
[[models]]
name = "smollm2-135m-instruct"
engine = "llamacpp"

[[models]]
name = "azure-4o"
engine = "openai"
params = {{ base_url = "{url}/azure/v1", model = "our-4o", listed_as = "gpt-4o-2024-05-13", api_key = "k" }}

[[models]]
name = "claude"
engine = "openai"
params = {{ base_url = "{url}/openrouter/v1", model = "anthropic/claude-3-opus" }}

[[models]]
name = "old"
engine = "openai"
params = {{ base_url = "{url}/openrouter/v1", model = "openai/gpt-3.5-turbo-0301" }}
{loops}""",
    )


def _json(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    out: dict[str, Any] = json.loads(result.stdout)
    return out


def _watch(config: Path, *flags: str) -> dict[str, dict[str, Any]]:
    rows = _json("loop", "deprecations", "--json", *flags, "--config", str(config))["models"]
    return {row["model"]: row for row in rows}


def _status(config: Path) -> dict[str, dict[str, Any]]:
    loops = _json("loop", "status", "--json", "--config", str(config))["loops"]
    return {row["name"]: row for row in loops}


def _ran_days_ago(config: Path, days: float) -> float:
    """Give every loop a run that ended ``days`` ago; returns when it ended."""
    settings = load_settings(config)
    store = open_store(settings)
    ended = time.time() - days * 86400
    try:
        for name in ("support", "sales", "legacy"):
            run = claim_run(store, get_loop(settings, name))
            end_run(store, run.id, "finished")
        with store.session() as s:
            s.execute(update(LoopRun).values(ended=ended, finished=ended))
    finally:
        store.close()
    return ended


def test_reported_dates_are_recorded_and_raise_the_cadence(tmp_path: Path) -> None:
    with upstreams() as up:
        config = _config(tmp_path / "openclone.toml", up.url)
        before = _watch(config)  # nothing read yet: no date, and no request made
        assert up.asked == []
        assert [(r["proxied"], r["upstream"], r["effective"]) for r in before.values()] == [
            (True, None, None)
        ] * 3

        rows = _watch(config, "--refresh")
        # One request per upstream: claude and old share OpenRouter's list.
        assert sorted(up.asked) == ["/azure/v1/models", "/openrouter/v1/models"]

    azure, claude, old = rows["azure-4o"], rows["claude"], rows["old"]
    assert (azure["upstream"]["state"], azure["upstream"]["shutdown"]) == ("deprecated", str(IN_20))
    assert (azure["effective"], azure["days_left"]) == (str(IN_20), 20)
    assert (claude["upstream"]["state"], claude["effective"], claude["days_left"]) == (
        "listed", str(IN_45), 45)  # fmt: skip
    # Not in its upstream's list: gone, in force today.
    assert (old["upstream"]["state"], old["effective"], old["days_left"]) == ("gone", str(TODAY), 0)
    assert old["upstream"]["checked"] is not None and old["upstream"]["error"] is None

    # The status counts the days from the upstream's dates (no [deprecations] at all).
    status = _status(config)
    watch = {name: status[name]["deprecation"] for name in status}
    assert {n: (w["days_left"], w["near"]) for n, w in watch.items()} == {
        "support": (20, True), "sales": (45, False), "legacy": (0, True)}  # fmt: skip
    assert watch["support"]["upstream"]["state"] == "deprecated"
    assert watch["support"]["configured"] is None

    # Near a shutdown the loop runs every 2 days (half its `every`), else every 4.
    ended = _ran_days_ago(config, 3)
    settings = load_settings(config)
    store = open_store(settings)
    try:
        due = {n: next_due(store, get_loop(settings, n), settings) for n in status}
    finally:
        store.close()
    day = 86400.0
    assert due == {"support": ended + 2 * day, "sales": ended + 4 * day, "legacy": ended + 2 * day}
    when = {n: row["next_due"] for n, row in _status(config).items()}
    assert when["support"] is not None and when["sales"] is not None
    assert when["support"] < when["sales"]


def test_loop_start_reads_each_list_at_most_once_a_day(tmp_path: Path) -> None:
    with upstreams() as up:
        config = _config(tmp_path / "openclone.toml", up.url)
        for _ in range(2):
            result = runner.invoke(app, ["loop", "start", "--once", "--config", str(config)])
            assert result.exit_code == 0, result.output
        assert sorted(up.asked) == ["/azure/v1/models", "/openrouter/v1/models"]
        assert _watch(config)["old"]["upstream"]["state"] == "gone"

        store = open_store(load_settings(config))
        try:  # a day later the lists are read again
            with store.session() as s:
                s.execute(update(UpstreamModel).values(checked=time.time() - 86400 - 60))
        finally:
            store.close()
        result = runner.invoke(app, ["loop", "start", "--once", "--config", str(config)])
        assert result.exit_code == 0, result.output
        assert len(up.asked) == 4


def _dead_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    return f"http://127.0.0.1:{port}"


def test_an_unreadable_upstream_leaves_the_configured_date_in_force(tmp_path: Path) -> None:
    in_60 = TODAY + dt.timedelta(days=60)
    extra = f'[deprecations]\n"azure-4o" = {in_60}\n"claude" = {in_60}\n'
    config = tmp_path / "openclone.toml"
    with upstreams() as up:
        _config(config, up.url, extra)
        assert _watch(config, "--refresh")["claude"]["effective"] == str(IN_45)  # upstream's
    # The same upstream is away now: the read fails, nothing raises, the last good answer
    # stands and the failure is recorded.
    claude = _watch(config, "--refresh")["claude"]
    assert claude["upstream"]["error"]
    assert (claude["upstream"]["state"], claude["effective"]) == ("listed", str(IN_45))

    # An upstream never read: "unknown", and the configured date is in force.
    _config(config, _dead_url(), extra)
    azure = _watch(config, "--refresh")["azure-4o"]
    assert azure["upstream"]["state"] == "unknown" and azure["upstream"]["error"]
    assert (azure["configured"], azure["effective"], azure["days_left"]) == (
        str(in_60), str(in_60), 60)  # fmt: skip
    result = runner.invoke(app, ["loop", "start", "--once", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "3 run(s) started" in result.stderr
    watch = _status(config)["support"]["deprecation"]
    assert (watch["days_left"], watch["near"], watch["configured"]) == (60, False, str(in_60))
    assert watch["upstream"]["state"] == "unknown"


def test_a_model_can_be_left_unwatched(tmp_path: Path) -> None:
    config = _config(tmp_path / "openclone.toml", "http://127.0.0.1:9")
    text = config.read_text().replace(
        'model = "anthropic/claude-3-opus"',
        'model = "anthropic/claude-3-opus", watch_lifecycle = false',
    )
    config.write_text(text)
    settings = load_settings(config)
    assert proxied(settings, "claude") is None
    azure = proxied(settings, "azure-4o")
    assert azure is not None and azure.upstream_model == "gpt-4o-2024-05-13"


def test_a_model_missing_from_the_first_page_of_a_paged_list_is_not_gone(tmp_path: Path) -> None:
    with upstreams() as up:
        config = write_config(
            tmp_path / "openclone.toml",
            f"""
[[models]]
name = "sonnet"
engine = "openai"
params = {{ base_url = "{up.url}/paged/v1", model = "claude-sonnet-4" }}

[[loops]]
name = "support"
model = "support"
tenant = "acme"
teacher = "sonnet"
every = "4d"
""",
        )
        row = _watch(config, "--refresh")["sonnet"]
    assert up.asked == ["/paged/v1/models"]
    assert (row["upstream"]["state"], row["effective"], row["days_left"]) == (
        "unlisted",
        None,
        None,
    )


def test_a_model_deprecated_without_a_date_raises_the_cadence(tmp_path: Path) -> None:
    with upstreams() as up:
        config = write_config(
            tmp_path / "openclone.toml",
            f"""
[[models]]
name = "azure-35"
engine = "openai"
params = {{ base_url = "{up.url}/azure/v1", model = "gpt-35-turbo-0613", api_key = "k" }}

[[loops]]
name = "support"
model = "support"
tenant = "acme"
teacher = "azure-35"
every = "4d"
deprecation_every = "1d"
""",
        )
        row = _watch(config, "--refresh")["azure-35"]
    assert (row["upstream"]["state"], row["effective"], row["days_left"]) == (
        "deprecated", None, None)  # fmt: skip
    # No date to count down to: it may stop any day, so the loop distils on its
    # deprecation cadence, and the status says why.
    watch = _status(config)["support"]["deprecation"]
    assert (watch["shutdown"], watch["days_left"], watch["near"]) == (None, None, True)
    settings = load_settings(config)
    store = open_store(settings)
    try:
        run = claim_run(store, get_loop(settings, "support"))
        end_run(store, run.id, "finished")
        ended = time.time() - 2 * 86400
        with store.session() as s:
            s.execute(update(LoopRun).values(ended=ended, finished=ended))
        assert next_due(store, get_loop(settings, "support"), settings) == ended + 86400
    finally:
        store.close()
    result = runner.invoke(app, ["loop", "status", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "azure-35 is deprecated, no shutdown date announced" in result.stdout

    # A far date configured earlier does not hide it: the model may stop before then.
    far = TODAY + dt.timedelta(days=300)
    config.write_text(f'[deprecations]\n"azure-35" = {far}\n' + config.read_text())
    watch = _status(config)["support"]["deprecation"]
    assert (watch["shutdown"], watch["days_left"], watch["near"]) == (str(far), 300, True)
