"""Issue 19 item 7 on real servers: the admin HTTP API (``/api/admin``) for admin keys only,
every action audited with the admin key as the actor, and retention applied on a schedule
inside the server."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
from conftest import BUNDLED, Server, start_server, stop_server
from sqlalchemy import select
from store.helpers import exchange, write

from openclone.config import ModelConfig, load_settings
from openclone.gateway.app import create_app
from openclone.store import Store, open_store
from openclone.store.accounts import set_tenant_policy
from openclone.store.audit import list_audit
from openclone.store.keys import create_key
from openclone.store.lineage import erasures_since
from openclone.store.tables import Capture, Tenant, User

pytestmark = pytest.mark.slow

DEAD_UPSTREAM = """
[[models]]
name = "m"
engine = "openai"
params = { base_url = "http://127.0.0.1:9/v1", connect_timeout = 1 }
"""
DAY = 86400


def _admin_routes() -> list[tuple[str, str]]:
    """Every (method, path) the app serves under /api/admin, from its OpenAPI schema: a
    route added without the admin guard fails the test below."""
    app = create_app(load_settings(models=[ModelConfig(name="m", engine="openai", params={})]))
    return sorted(
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/api/admin")
        for method in operations
    )


ROUTES = _admin_routes()


@dataclass
class Site:
    server: Server
    home: Path
    admin: str  # an admin key
    admin_id: str
    user: str  # a person's key (acme/ana), not an admin's

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.server.url, headers=headers, timeout=120)

    def store(self) -> Store:
        return open_store(None, self.home)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The bundled model, keys required, retention not scheduled (the API runs it)."""
    work = tmp_path_factory.mktemp("admin")
    home = work / "home"
    store = open_store(None, home)
    info, admin = create_key(store, "ops", admin=True)
    user = create_key(store, "acme", "ana")[1]
    store.close()
    config = f'default_model = "{BUNDLED}"\nretention_interval = 0\n'
    server = start_server(config, work)
    try:
        yield Site(server, home, admin, info.id, user)
    finally:
        stop_server(server)


def _error(resp: httpx.Response, status: int) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return dict(body["error"])


def _wait(what: str, done: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _audited(site: Site, action: str) -> list[dict[str, object]]:
    with site.client(site.admin) as admin:
        page = admin.get("/api/admin/audit", params={"actor": f"key:{site.admin_id}",
                                                      "action": action, "limit": 500})  # fmt: skip
    assert page.status_code == 200, page.text
    return [e["detail"] for e in page.json()["data"]]


def test_the_route_table_is_the_whole_admin_api() -> None:
    paths = {p for _, p in ROUTES}
    assert {"/api/admin/tenants", "/api/admin/tenants/{tenant}/keys", "/api/admin/audit",
            "/api/admin/erasures", "/api/admin/retention/run",
            "/api/admin/tenants/{tenant}/limits", "/api/admin/keys/{key}/limits"} <= paths  # fmt: skip


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_every_admin_route_refuses_other_keys(site: Site, method: str, path: str) -> None:
    url = re.sub(r"\{(\w+)\}", r"\1", path)  # /tenants/{tenant}: /tenants/tenant
    body: dict[str, object] | None = {} if method in ("POST", "PUT", "PATCH") else None
    with site.client(site.user) as person:
        err = _error(person.request(method, url, json=body), 403)
        assert err["type"] == "permission_error" and "admin key" in str(err["message"])
    with site.client() as nobody:
        assert _error(nobody.request(method, url, json=body), 401)["code"] == "invalid_api_key"
    with site.client("oc-not-a-key") as guesser:
        assert _error(guesser.request(method, url, json=body), 401)["code"] == "invalid_api_key"


def test_state_changes_need_json_from_this_origin(site: Site) -> None:
    with site.client(site.admin) as admin:
        evil = admin.post("/api/admin/tenants", json={"name": "evil"},
                          headers={"Origin": "https://evil.example"})  # fmt: skip
        assert _error(evil, 403)["code"] == "cross_origin"
        form = admin.post("/api/admin/tenants", content=b"name=evil",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        assert _error(form, 400)["code"] == "unsupported_media_type"
        assert admin.get("/api/admin/tenants/evil").status_code == 400  # nothing was created
        mine = admin.post("/api/admin/tenants", json={"name": "same-origin"},
                          headers={"Origin": site.server.url})  # fmt: skip
        assert mine.status_code == 201, mine.text
    # The page is public (it holds no data); the API behind it is not.
    page = httpx.get(site.server.url + "/admin", timeout=30)
    assert page.status_code == 200 and "/static/admin.js" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_a_tenant_and_key_made_over_http_serve_the_openai_sdk_until_revoked(site: Site) -> None:
    with site.client(site.admin) as admin:
        made = admin.post("/api/admin/tenants", json={"name": "globex", "consent_default": True})
        assert made.status_code == 201, made.text
        assert made.json()["consent_default"] is True and made.json()["keys"] == 0
        again = admin.post("/api/admin/tenants", json={"name": "globex"})
        assert _error(again, 400)["code"] == "tenant_exists"
        listed = admin.get("/api/admin/tenants", params={"limit": 1})
        assert listed.json()["has_more"] is True and len(listed.json()["data"]) == 1
        unknown = admin.post("/api/admin/tenants/nobody/keys", json={"user": "gil"})
        assert _error(unknown, 400)["param"] == "tenant"  # keys do not make tenants here

        key = admin.post("/api/admin/tenants/globex/keys", json={"user": "gil"})
        assert key.status_code == 201, key.text
        secret, key_id = key.json()["secret"], key.json()["key"]["id"]
        assert secret.startswith("oc-") and key.json()["key"]["scope"] == "user"

        gil = openai.OpenAI(base_url=site.server.base_url, api_key=secret, max_retries=0)
        reply = gil.chat.completions.create(
            model=BUNDLED, max_tokens=4, messages=[{"role": "user", "content": "Say hi."}]
        )
        assert reply.choices[0].message.content is not None
        _wait(
            "gil's capture", lambda: admin.get("/api/admin/tenants/globex").json()["captures"] == 1
        )
        detail = admin.get("/api/admin/tenants/globex").json()
        assert (detail["users"], detail["keys"], detail["revoked_keys"]) == (1, 1, 0)
        (person,) = admin.get("/api/admin/tenants/globex/users").json()["data"]
        assert (person["name"], person["captures"], person["keys"]) == ("gil", 1, 1)

        keys = admin.get("/api/admin/tenants/globex/keys")
        assert secret not in keys.text and secret[10:] not in keys.text  # never shown again
        assert [k["prefix"] for k in keys.json()["data"]] == [secret[:10]]

        # Made an admin, the key reaches the admin API at once; made a user again, it is not.
        with site.client(secret) as as_gil:
            assert admin.patch(f"/api/admin/keys/{key_id}", json={"admin": True}).status_code == 200
            assert as_gil.get("/api/admin/tenants").status_code == 200
            assert (
                admin.patch(f"/api/admin/keys/{key_id}", json={"admin": False}).status_code == 200
            )
            assert as_gil.get("/api/admin/tenants").status_code == 403

        limits = admin.put(f"/api/admin/keys/{secret[:10]}/limits", json={"rpm": 100})
        assert limits.status_code == 200 and limits.json()["limits"]["rpm"] == 100

        revoked = admin.post(f"/api/admin/keys/{key_id}/revoke", json={})
        assert revoked.status_code == 200 and revoked.json()["revoked"] is not None
    with pytest.raises(openai.AuthenticationError):
        gil.models.list()

    assert "globex" in [d["tenant"] for d in _audited(site, "tenant.create")]
    assert [d["scope"] for d in _audited(site, "key.scope")] == ["user", "admin"]  # newest first
    assert [d["id"] for d in _audited(site, "key.revoke")] == [key_id]
    assert [d["key"] for d in _audited(site, "limits.set")] == [secret[:10]]
    created = [d for d in _audited(site, "key.create") if d["id"] == key_id]
    assert created and created[0]["user"] == "gil"


def test_erasing_a_capture_and_then_a_person_over_http(site: Site) -> None:
    marker = "Zebra-canary-4417"
    with site.client(site.admin) as admin:
        secret = admin.post("/api/admin/tenants/acme/keys", json={"user": "eve"}).json()["secret"]
        eve = openai.OpenAI(base_url=site.server.base_url, api_key=secret, max_retries=0)
        answers = [
            eve.chat.completions.with_raw_response.create(
                model=BUNDLED, max_tokens=2,
                messages=[{"role": "user", "content": f"{marker} number {i}"}],
            )
            for i in range(2)
        ]  # fmt: skip
        first = answers[0].headers["x-openclone-capture-id"]

        def eves() -> dict[str, object]:
            users = admin.get("/api/admin/tenants/acme/users").json()["data"]
            return next((u for u in users if u["name"] == "eve"), {})

        _wait("eve's captures", lambda: eves().get("captures") == 2)

        # One capture, then the person; each needs its confirmation.
        body = {"tenant": "acme", "capture": first, "confirm": "acme"}
        refused = admin.post("/api/admin/erasures", json=body)
        assert _error(refused, 400)["code"] == "confirmation_required"
        one = admin.post("/api/admin/erasures", json={**body, "confirm": first})
        assert one.status_code == 200, one.text
        assert (one.json()["kind"], one.json()["counts"]["captures"]) == ("capture", 1)
        assert eves()["captures"] == 1

        url = "/api/admin/tenants/acme/users/eve/erase"
        assert _error(admin.post(url, json={"confirm": "Eve"}), 400)["param"] == "confirm"
        assert eves()["captures"] == 1  # nothing erased by a wrong confirmation
        gone = admin.post(url, json={"confirm": "eve"})
        assert gone.status_code == 200, gone.text
        assert gone.json()["counts"]["captures"] == 1 and gone.json()["counts"]["keys"] == 1
        assert eves() == {}

        listed = admin.get("/api/admin/erasures").json()["data"]
        assert [(e["kind"], e["target"], e["actor"]) for e in listed[:2]] == [
            ("user", "acme/eve", f"key:{site.admin_id}"),
            ("capture", first, f"key:{site.admin_id}"),
        ]
    with pytest.raises(openai.AuthenticationError):
        eve.models.list()  # the person's key went with them
    store = site.store()
    try:
        with store.session() as s:
            acme = s.scalar(select(Tenant.id).where(Tenant.name == "acme"))
            assert s.scalar(select(User).where(User.tenant_id == acme, User.name == "eve")) is None
            texts = [str(r) for r in s.scalars(select(Capture.request))]
        assert not [t for t in texts if marker in t]
    finally:
        store.close()
    assert [d["kind"] for d in _audited(site, "erase")][:2] == ["user", "capture"]


def test_retention_run_over_http_removes_old_rows(site: Site) -> None:
    store = site.store()
    try:
        old = exchange("old question", tenant="acme", user="ana", created=time.time() - 40 * DAY)
        new = exchange("new question", tenant="acme", user="ana")
        write(store, old, new)
    finally:
        store.close()
    with site.client(site.admin) as admin:
        status = admin.get("/api/admin/retention").json()
        assert status["interval"] == 0 and status["last_run"] is None  # not scheduled here
        policy = admin.patch("/api/admin/tenants/acme", json={"retention_days": 30})
        assert policy.status_code == 200 and policy.json()["retention_days"] == 30
        assert admin.get("/api/admin/retention").json()["tenants"] == {"acme": 30}

        ran = admin.post("/api/admin/retention/run", json={})
        assert ran.status_code == 200, ran.text
        (erasure,) = ran.json()["data"]
        assert (erasure["kind"], erasure["target"]) == ("retention", "acme")
        assert erasure["counts"]["captures"] == 1
        assert admin.post("/api/admin/retention/run", json={}).json()["data"] == []

        cleared = admin.patch("/api/admin/tenants/acme", json={"retention_days": None})
        assert cleared.json()["retention_days"] is None
    store = site.store()
    try:
        with store.session() as s:
            ids = set(s.scalars(select(Capture.id)))
        assert old.id not in ids and new.id in ids
    finally:
        store.close()
    runs = _audited(site, "retention.run")
    assert [r["captures"] for r in runs][:2] == [0, 1]


def test_the_server_applies_retention_on_its_schedule(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = open_store(None, home)
    try:
        admin = create_key(store, "ops", admin=True)[1]
        set_tenant_policy(store, "acme", actor="test", retention_days=1)
        old = exchange("stale", tenant="acme", created=time.time() - 2 * DAY)
        fresh = exchange("fresh", tenant="acme")
        write(store, old, fresh)
        server = start_server("retention_interval = 0.3\n" + DEAD_UPSTREAM, tmp_path)
        try:

            def kept() -> set[str]:
                with store.session() as s:
                    return set(s.scalars(select(Capture.id)))

            _wait("the first scheduled run", lambda: old.id not in kept(), timeout=30)
            # It keeps running: an old capture written now goes at a later run.
            later = exchange("stale too", tenant="acme", created=time.time() - 3 * DAY)
            write(store, later)
            _wait("a later scheduled run", lambda: later.id not in kept(), timeout=30)
            assert fresh.id in kept()

            with httpx.Client(base_url=server.url, timeout=30,
                              headers={"Authorization": f"Bearer {admin}"}) as c:  # fmt: skip
                status = c.get("/api/admin/retention").json()
            assert status["interval"] == 0.3 and status["last_run"] is not None
            assert status["last_error"] is None
        finally:
            stop_server(server)
        erased = [e for e in erasures_since(store) if e.actor == "retention"]
        assert [e.target for e in erased] == ["acme", "acme"]
        assert sum(e.captures for e in erased) == 2
        audited = list_audit(store, action="erase", actor="retention")
        assert len(audited) == 2 and {a.detail["kind"] for a in audited} == {"retention"}
        log = (tmp_path / "server.log").read_text()
        assert "retention erased" in log
    finally:
        store.close()
