"""Rate limits in the store, and gateways (limiters) that share its counters."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from typer.testing import CliRunner

from openclone.cli import app
from openclone.errors import InvalidRequestError, RateLimitExceeded
from openclone.gateway.ratelimit import Limiter
from openclone.schema import ChatCompletionRequest
from openclone.store import Store
from openclone.store.accounts import Principal
from openclone.store.audit import list_audit
from openclone.store.keys import create_key
from openclone.store.privacy import erase
from openclone.store.ratelimits import (
    Limits,
    get_limits,
    minute_of,
    month_of,
    month_usage,
    set_limits,
    sync_usage,
)
from openclone.store.tables import RateLimit, RateUsage

ACME = Principal(tenant="acme", user=None, key_id=None, scope="user")


def fresh_minute() -> None:
    """Start near the beginning of a UTC minute: rpm counts reset when one ends."""
    if time.time() % 60 > 45:
        time.sleep(60.5 - time.time() % 60)


def chat(max_tokens: int | None = 5, text: str = "hi") -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "max_tokens": max_tokens, "messages": [{"role": "user", "content": text}]}
    )


def test_limits_are_set_kept_cleared_and_audited(store: Store) -> None:
    assert set_limits(store, tenant="acme", values={"rpm": 60, "tpm": 1000}, actor="ops") == (
        Limits(rpm=60, tpm=1000)
    )
    # Only what is named changes; 0 removes a limit.
    set_limits(store, tenant="acme", values={"tpm": 0, "max_streams": 2}, actor="ops")
    assert get_limits(store, tenant="acme") == Limits(rpm=60, max_streams=2)
    info, _ = create_key(store, "acme")
    set_limits(store, key=info.prefix, values={"monthly_tokens": 10**12}, actor="ops")
    assert get_limits(store, key=info.id) == Limits(monthly_tokens=10**12)
    assert get_limits(store, tenant="acme") == Limits(rpm=60, max_streams=2)  # untouched
    # replace (the admin API's PUT): what is not named goes.
    set_limits(store, tenant="acme", values={"tpm": 5}, replace=True, actor="ops")
    assert get_limits(store, tenant="acme") == Limits(tpm=5)
    entries = list_audit(store, action="limits")
    assert [e.detail.get("tpm") for e in entries] == [5, None, None, 1000]
    assert entries[1].detail["key"] == info.prefix and entries[0].actor == "ops"


def test_bad_limits_are_refused(store: Store) -> None:
    with pytest.raises(InvalidRequestError, match="rpm must be"):
        set_limits(store, tenant="acme", values={"rpm": -1}, actor="ops")
    with pytest.raises(InvalidRequestError, match="unknown limit 'rps'"):
        set_limits(store, tenant="acme", values={"rps": 1}, actor="ops")
    with pytest.raises(InvalidRequestError, match="no API key"):
        set_limits(store, key="oc-nothere", values={"rpm": 1}, actor="ops")
    with pytest.raises(InvalidRequestError, match="no tenant named 'ghost'"):
        get_limits(store, tenant="ghost")


def test_two_gateways_converge_on_one_count(store: Store) -> None:
    fresh_minute()
    set_limits(store, tenant="acme", values={"rpm": 3}, actor="ops")
    a, b = Limiter(), Limiter()

    async def run() -> None:
        await a.sync(store)
        await b.sync(store)
        for _ in range(2):
            a.admit(ACME, chat())
        b.admit(ACME, chat())  # b has not heard of a's two: it admits its own
        for gateway in (a, b, a):  # each sends what it counted, then reads everyone's
            await gateway.sync(store)
        for gateway in (a, b):  # now both know all three
            with pytest.raises(RateLimitExceeded) as refused:
                gateway.admit(ACME, chat())
            assert refused.value.headers["x-ratelimit-remaining-requests"] == "0"
        assert a.usage("acme")["requests_this_minute"] == 3

    asyncio.run(run())


def test_usage_is_added_atomically_by_many_gateways(store: Store) -> None:
    set_limits(store, tenant="acme", values={"monthly_tokens": 10**9}, actor="ops")
    with store.session() as s:
        (row,) = s.query(RateLimit).all()
        tenant_id = row.tenant_id
    month = month_of(time.time())
    window = (row.subject, "M", month)
    errors: list[BaseException] = []

    def gateway() -> None:
        try:
            for _ in range(10):
                sync_usage(store, {window: (1, 7, tenant_id)}, minute_of(time.time()), month)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=gateway) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert month_usage(store, "acme", month) == 4 * 10 * 7


def test_tokens_settle_to_what_was_used(store: Store) -> None:
    set_limits(store, tenant="acme", values={"tpm": 10_000, "monthly_tokens": 1000}, actor="ops")
    gw = Limiter()

    async def run() -> None:
        await gw.sync(store)
        ticket = gw.admit(ACME, chat(max_tokens=200, text="x" * 40))
        assert ticket is not None and ticket.estimate == 10 + 200
        assert ticket.headers["x-ratelimit-remaining-tokens"] == str(10_000 - 210)
        ticket.settle(25)
        ticket.settle(999)  # only the first settlement counts
        assert gw.usage("acme")["tokens_this_month"] == 25
        await gw.sync(store)

    asyncio.run(run())
    assert month_usage(store, "acme", month_of(time.time())) == 25


def test_erasing_a_tenant_takes_its_limits_and_counts(store: Store) -> None:
    set_limits(store, tenant="acme", values={"rpm": 5}, actor="ops")
    gw = Limiter()

    async def run() -> None:
        await gw.sync(store)
        gw.admit(ACME, chat())
        await gw.sync(store)

    asyncio.run(run())
    erase(store, actor="ops", tenant="acme")
    with store.session() as s:
        assert s.query(RateLimit).count() == 0 and s.query(RateUsage).count() == 0


def test_the_cli_sets_and_shows_limits(
    store: Store, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENCLONE_DATABASE_URL", store_url)
    runner = CliRunner()

    def ok(*args: str) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0 and result.exception is None, result.output
        return " ".join(result.stdout.split())  # whatever the terminal's width

    out = ok("tenants", "set", "acme", "--rpm", "60", "--tpm", "40000", "--max-streams", "4",
             "--monthly-tokens", "5000000")  # fmt: skip
    assert "limits: rpm 60, tpm 40000, max streams 4, monthly tokens 5000000" in out
    assert "consent off" in out  # the policy is shown alongside, unchanged
    out = ok("tenants", "set", "acme", "--consent", "on", "--tpm", "0")
    assert "consent on" in out and "limits: rpm 60, max streams 4, monthly" in out
    shown = ok("tenants", "show", "acme")
    assert "rpm 60" in shown and "tokens used this month: 0 of 5000000" in shown
    info, _ = create_key(store, "acme")
    assert "limits: rpm 5" in ok("keys", "set", info.prefix, "--rpm", "5")
    assert "limits: rpm 5" in ok("keys", "set", info.id)  # no flags: shows them
    assert get_limits(store, key=info.id) == Limits(rpm=5)
    bad = runner.invoke(app, ["tenants", "set", "acme", "--rpm", "-3"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    unknown = runner.invoke(app, ["keys", "set", "oc-nothere", "--rpm", "1"])
    assert unknown.exit_code == 1 and "no API key" in unknown.stderr
