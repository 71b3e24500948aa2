"""Issue 19 item 2 on real servers: per-tenant and per-key rate limits and quotas, as a
client meets them (429s in OpenAI's shape, Retry-After, x-ratelimit-* headers), and
gateways that share one store sharing one count."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import BUNDLED, Server, start_server, stop_server

from openclone.store import open_store
from openclone.store.audit import list_audit
from openclone.store.keys import create_key
from openclone.store.ratelimits import month_of, month_usage, set_limits

pytestmark = pytest.mark.slow

HEADERS = [f"x-ratelimit-{w}-{k}" for w in ("limit", "remaining", "reset")
           for k in ("requests", "tokens")]  # fmt: skip
# No model loads: a request still counts before the (failing) upstream call.
DEAD_UPSTREAM = """
rate_limit_sync = 0.2
[[models]]
name = "m"
engine = "openai"
params = { base_url = "http://127.0.0.1:9/v1", connect_timeout = 1 }
"""


def fresh_minute() -> None:
    """Start near the beginning of a UTC minute: per-minute counts reset when one ends."""
    if time.time() % 60 > 40:
        time.sleep(60.5 - time.time() % 60)


def chat(client: httpx.Client, max_tokens: int = 2, model: str = BUNDLED) -> httpx.Response:
    return client.post(
        "/v1/chat/completions",
        json={"model": model, "max_tokens": max_tokens,
              "messages": [{"role": "user", "content": "Say hi."}]},
    )  # fmt: skip


def error(resp: httpx.Response) -> dict[str, object]:
    body = resp.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return dict(body["error"])


@dataclass
class Limited:
    server: Server
    home: Path
    keys: dict[str, str]

    def client(self, who: str) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, timeout=120,
                            headers={"Authorization": f"Bearer {self.keys[who]}"})  # fmt: skip


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Limited]:
    """A server with the bundled model and one tenant per kind of limit."""
    work = tmp_path_factory.mktemp("limits")
    home = work / "home"
    store = open_store(None, home)
    keys = {t: create_key(store, t)[1] for t in ("acme", "globex", "tight", "streamy", "quota")}
    keys["admin"] = create_key(store, "ops", admin=True)[1]
    for tenant, values in {
        "acme": {"rpm": 2},
        "tight": {"tpm": 50},
        "streamy": {"max_streams": 1},
        "quota": {"monthly_tokens": 20},
    }.items():
        set_limits(store, tenant=tenant, values=values, actor="test")
    store.close()
    server = start_server(f'default_model = "{BUNDLED}"\nrate_limit_sync = 0.2\n', work)
    try:
        yield Limited(server, home, keys)
    finally:
        stop_server(server)


def test_a_tenant_over_its_rpm_gets_429s_and_another_tenant_does_not(limited: Limited) -> None:
    fresh_minute()
    acme, globex = limited.client("acme"), limited.client("globex")
    first, second = chat(acme), chat(acme)
    assert first.status_code == second.status_code == 200
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert [first.headers["x-ratelimit-remaining-requests"],
            second.headers["x-ratelimit-remaining-requests"]] == ["1", "0"]  # fmt: skip

    third = chat(acme)
    assert third.status_code == 429
    err = error(third)
    assert (err["type"], err["code"]) == ("requests", "rate_limit_exceeded")
    assert "requests per min (RPM) of tenant 'acme': Limit 2" in str(err["message"])
    assert 1 <= int(third.headers["retry-after"]) <= 60
    assert third.headers["x-ratelimit-remaining-requests"] == "0"
    assert third.headers["x-ratelimit-reset-requests"].endswith("s")
    # Every serving endpoint is held to the same count.
    for path, body in [
        ("/v1/completions", {"model": BUNDLED, "prompt": "Hi", "max_tokens": 1}),
        ("/v1/embeddings", {"model": BUNDLED, "input": "Hi"}),
        ("/v1/responses", {"model": BUNDLED, "input": "Hi", "max_output_tokens": 16}),
    ]:
        refused = acme.post(path, json=body)
        assert refused.status_code == 429, (path, refused.text)
        assert error(refused)["code"] == "rate_limit_exceeded"

    # globex has no limits: served, and no rate-limit headers at all.
    for _ in range(3):
        ok = chat(globex)
        assert ok.status_code == 200
        assert not any(h in ok.headers for h in HEADERS)


def test_tpm_refuses_a_request_whose_max_tokens_would_exceed_it(limited: Limited) -> None:
    tight = limited.client("tight")
    too_big = chat(tight, max_tokens=100)
    assert too_big.status_code == 429
    err = error(too_big)
    assert (err["type"], err["code"], err["param"]) == ("tokens", "rate_limit_exceeded",
                                                        "max_tokens")  # fmt: skip
    assert "tokens per min (TPM) of tenant 'tight': Limit 50" in str(err["message"])
    assert too_big.headers["x-ratelimit-limit-tokens"] == "50"
    assert "retry-after" in too_big.headers
    small = chat(tight, max_tokens=2)
    assert small.status_code == 200, small.text
    assert small.headers["x-ratelimit-limit-tokens"] == "50"
    assert int(small.headers["x-ratelimit-remaining-tokens"]) < 50


def test_one_stream_at_a_time_then_the_next(limited: Limited) -> None:
    streamy = limited.client("streamy")
    body = {"model": BUNDLED, "max_tokens": 12, "stream": True,
            "messages": [{"role": "user", "content": "Count to ten."}]}  # fmt: skip
    with streamy.stream("POST", "/v1/chat/completions", json=body) as first:
        assert first.status_code == 200
        lines = first.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))  # it is running
        second = streamy.post("/v1/chat/completions", json=body)
        assert second.status_code == 429
        err = error(second)
        assert (err["type"], err["code"]) == ("requests", "rate_limit_exceeded")
        assert "concurrent streams for tenant 'streamy': Limit 1, Open 1" in str(err["message"])
        assert second.headers["retry-after"] == "1"
        assert [line for line in lines if line][-1] == "data: [DONE]"  # the first ends...
    again = streamy.post("/v1/chat/completions", json=body)  # ...and frees its slot
    assert again.status_code == 200 and again.text.rstrip().endswith("data: [DONE]")


def test_an_exhausted_monthly_quota_is_a_clear_429(limited: Limited) -> None:
    quota = limited.client("quota")
    # Admitted on its estimate (a few tokens); settled with the engine's usage, which the
    # chat template makes larger than the whole quota.
    first = chat(quota)
    assert first.status_code == 200
    used = first.json()["usage"]["total_tokens"]
    assert used > 20
    refused = chat(quota)
    assert refused.status_code == 429
    err = error(refused)
    assert err["code"] == "insufficient_quota"
    message = str(err["message"])
    assert f"monthly token quota of tenant 'quota' is used up: Limit 20, Used {used}" in message
    assert "It resets on " in message and int(refused.headers["retry-after"]) > 0
    # The month's count is kept in the store (the gateway syncs it about once a second).
    store = open_store(None, limited.home)
    try:
        deadline = time.monotonic() + 30
        while month_usage(store, "quota", month_of(time.time())) < used:
            assert time.monotonic() < deadline, "the usage never reached the store"
            time.sleep(0.1)
    finally:
        store.close()


def test_admins_set_limits_over_http_and_the_gateway_applies_them(limited: Limited) -> None:
    fresh_minute()
    admin, globex = limited.client("admin"), limited.client("globex")
    url = "/api/admin/tenants/globex/limits"
    assert globex.get(url).status_code == 403  # not an admin key
    assert globex.put(url, json={"rpm": 1000}).status_code == 403
    bad = admin.put(url, json={"rps": 1})
    assert bad.status_code == 400 and error(bad)["param"] == "rps"
    put = admin.put(url, json={"rpm": 1, "tpm": None})
    assert put.status_code == 200 and put.json()["limits"]["rpm"] == 1
    deadline = time.monotonic() + 30
    while not admin.get(url).json()["usage"]:  # the gateway's next sync picks it up
        assert time.monotonic() < deadline, "the gateway never applied the new limits"
        time.sleep(0.1)
    assert chat(globex).status_code == 200
    assert chat(globex).status_code == 429
    assert admin.get(url).json()["usage"]["requests_this_minute"] == 1
    store = open_store(None, limited.home)
    try:
        (entry,) = [e for e in list_audit(store, action="limits") if e.actor.startswith("key:")]
        assert entry.detail["tenant"] == "globex" and entry.detail["rpm"] == 1
    finally:
        store.close()
    assert admin.put(url, json={}).json()["limits"]["rpm"] is None  # PUT {}: no limits


def test_two_gateways_on_one_store_share_an_rpm(tmp_path: Path) -> None:
    fresh_minute()
    home = tmp_path / "home"
    store = open_store(None, home)
    token = create_key(store, "acme")[1]
    admin = create_key(store, "ops", admin=True)[1]
    set_limits(store, tenant="acme", values={"rpm": 3}, actor="test")
    store.close()
    env = {"OPENCLONE_HOME": str(home)}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = start_server(DEAD_UPSTREAM, tmp_path / "a", env=env)
    try:
        b = start_server(DEAD_UPSTREAM, tmp_path / "b", env=env)
        try:

            def client(server: Server, key: str) -> httpx.Client:
                return httpx.Client(base_url=server.url, timeout=30,
                                    headers={"Authorization": f"Bearer {key}"})  # fmt: skip

            def seen(server: Server, requests: int) -> None:
                """Wait until ``server`` counts ``requests`` for acme (its syncs)."""
                url = "/api/admin/tenants/acme/limits"
                deadline = time.monotonic() + 30
                with client(server, admin) as c:
                    while c.get(url).json()["usage"].get("requests_this_minute") != requests:
                        assert time.monotonic() < deadline, "the gateways never converged"
                        time.sleep(0.05)

            on_a, on_b = client(a, token), client(b, token)
            # The upstream is down (502/503), but each request is counted on admission.
            assert 429 not in [chat(on_a, model="m").status_code for _ in range(2)]
            seen(b, 2)  # b has a's two from the store
            assert chat(on_b, model="m").status_code != 429
            refused = chat(on_b, model="m")
            assert refused.status_code == 429
            assert "Limit 3, Used 3" in str(error(refused)["message"])
            seen(a, 3)  # and a has b's one
            assert chat(on_a, model="m").status_code == 429
        finally:
            stop_server(b)
    finally:
        stop_server(a)
