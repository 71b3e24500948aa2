"""Issue 17 item 3 over HTTP on a real server: dataset review under ``/api/admin/datasets``
for admin keys only, paged by row, searched, edited, approved in bulk, exported, audited."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from conftest import start_server, stop_server

from openclone.store import open_store
from openclone.store.audit import list_audit
from openclone.store.keys import create_key

pytestmark = pytest.mark.slow

DEAD_UPSTREAM = """
[[models]]
name = "m"
engine = "openai"
params = { base_url = "http://127.0.0.1:9/v1", connect_timeout = 1 }
"""


def _dataset(path: Path, n: int) -> Path:
    rows = []
    for i in range(n):
        topic = "refund" if i % 10 == 0 else "shipping"
        messages = [{"role": "user", "content": f"Question {i} on {topic}"},
                    {"role": "assistant", "content": f"Answer {i}."}]  # fmt: skip
        rows.append(json.dumps({"messages": messages, "metadata": {"teacher": "t"}}))
    path.write_text("\n".join(rows) + "\n")
    return path


def _error(resp: httpx.Response, status: int) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    return dict(resp.json()["error"])


def test_an_admin_reviews_a_dataset_and_a_tenant_key_cannot(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = open_store(None, home)
    info, admin_key = create_key(store, "ops", admin=True)
    person = create_key(store, "acme", "ana")[1]
    store.close()
    (home / "datasets").mkdir()
    path = _dataset(home / "datasets" / "distilled.jsonl", 120)
    server = start_server(DEAD_UPSTREAM, tmp_path)
    try:
        with (
            httpx.Client(base_url=server.url, timeout=60,
                         headers={"Authorization": f"Bearer {admin_key}"}) as admin,
            httpx.Client(base_url=server.url, timeout=60,
                         headers={"Authorization": f"Bearer {person}"}) as ana,
        ):  # fmt: skip
            assert _error(ana.get("/api/admin/datasets"), 403)["type"] == "permission_error"
            assert _error(ana.post("/api/admin/datasets", json={"path": str(path)}), 403)
            made = admin.post("/api/admin/datasets", json={"path": str(path)})
            assert made.status_code == 201, made.text
            ds = made.json()
            assert (ds["rows"], ds["counts"]["pending"], ds["tenant"]) == (120, 120, "default")
            url = f"/api/admin/datasets/{ds['id']}"
            assert _error(ana.get(f"{url}/examples"), 403)
            assert _error(ana.patch(f"{url}/examples/1", json={"answer": "x"}), 403)
            assert _error(admin.get("/api/admin/datasets/nope/examples"), 404)["param"] == "dataset"
            assert _error(admin.get(f"{url}/examples/999"), 404)["param"] == "row"
            missing = admin.post("/api/admin/datasets", json={"path": "datasets/no.jsonl"})
            assert "no file" in str(_error(missing, 400)["message"])
            # An admin key reaches only the home's datasets/ and loops/, whatever the path.
            master = home / "master.key"
            key_bytes = master.read_bytes()
            for outside in ("datasets/../master.key", str(master), str(tmp_path / "no.jsonl")):
                refused = admin.post("/api/admin/datasets", json={"path": outside})
                assert _error(refused, 400)["param"] == "path"

            first = admin.get(f"{url}/examples", params={"limit": 50}).json()
            assert [e["row"] for e in first["data"]] == list(range(50))
            assert first["next_after"] == 49 and first["total"] == 120
            third = admin.get(f"{url}/examples", params={"limit": 50, "after": 99}).json()
            assert [e["row"] for e in third["data"]] == list(range(100, 120))
            assert third["has_more"] is False
            found = admin.get(f"{url}/examples", params={"search": "refund"}).json()
            assert found["total"] == 12 and all("refund" in e["prompt"] for e in found["data"])

            edited = admin.patch(f"{url}/examples/3", json={"answer": "<b>Better</b>"})
            assert edited.status_code == 200 and edited.json()["answer"] == "<b>Better</b>"
            bulk = admin.post(f"{url}/review", json={"state": "approved", "all_matching": True,
                                                      "search": "refund"})  # fmt: skip
            assert bulk.json()["updated"] == 12
            some = admin.post(f"{url}/review", json={"state": "approved", "rows": [3, 10]})
            assert some.json()["updated"] == 2
            assert some.json()["dataset"]["counts"]["approved"] == 13
            both = admin.post(f"{url}/review", json={"state": "approved", "rows": [1],
                                                      "all_matching": True})  # fmt: skip
            assert _error(both, 400)["param"] == "rows"
            cross = admin.post(f"{url}/review", json={"state": "approved", "rows": [1]},
                               headers={"Origin": "https://evil.example"})  # fmt: skip
            assert _error(cross, 403)["code"] == "cross_origin"

            for target in (str(master), "datasets/../master.key", "datasets/distilled.jsonl"):
                refused = admin.post(f"{url}/export", json={"out": target})
                assert _error(refused, 400)["param"] == "out"  # outside, or not its export
            assert master.read_bytes() == key_bytes
            out = home / "datasets" / "exports" / "reviewed.jsonl"
            exported = admin.post(f"{url}/export", json={"out": "datasets/exports/reviewed.jsonl"})
            assert exported.json() == {"path": str(out.resolve()), "rows": 13}
            again = admin.post(f"{url}/export", json={"out": str(out)})  # its own: replaced
            assert again.status_code == 200, again.text
        answers = [
            json.loads(line)["messages"][-1]["content"] for line in out.read_text().splitlines()
        ]
        assert "<b>Better</b>" in answers and len(answers) == 13
        store = open_store(None, home)
        try:
            audited = list_audit(store, 20, action="review", actor=f"key:{info.id}")
        finally:
            store.close()
        assert [e.action for e in audited] == ["review.export", "review.export",
                                               "review.approve", "review.approve", "review.edit",
                                               "review.add"]  # fmt: skip
        assert audited[3].detail["all_matching"] is True and "refund" not in json.dumps(
            audited[3].detail
        )
    finally:
        stop_server(server)
