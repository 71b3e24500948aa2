"""Erasure reaches distilled data: `distill --from-captures` → `erase` → `audit erasures`."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete
from store.helpers import exchange, write
from typer.testing import CliRunner

from distill.standin import StandInTeacher
from openclone.cli import app
from openclone.files import file_sha256
from openclone.store import open_store
from openclone.store.accounts import set_tenant_policy
from openclone.store.tables import ExportItem
from openclone.store.trained import TrainedModel, save_record

runner = CliRunner()
EVE_SECRET = "EVE-canary-5521 my merger plan for Initech"


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's teacher replaced by a stand-in (see distill/standin.py)."""

    async def open_standin(settings: object, teacher: str, *_: object) -> StandInTeacher:
        return StandInTeacher(seed_instruction="x", models=[teacher])

    monkeypatch.setattr("openclone.distill.teacher.open_teacher_client", open_standin)


@pytest.fixture
def captured(home: Path) -> dict[str, str]:
    """Real captures by eve and bob of tenant acme (consented), through the capture writer."""
    store = open_store(None, home)
    try:
        set_tenant_policy(store, "acme", actor="admin", consent=True)
        eve = exchange(f"Summarise {EVE_SECRET} please", user="eve")
        bob = exchange("Summarise quarterly shipping volumes please", user="bob")
        write(store, eve, bob)
    finally:
        store.close()
    return {"eve": eve.id, "bob": bob.id}


@pytest.fixture
def home(_isolated_home: Path) -> Path:
    _isolated_home.mkdir(parents=True, exist_ok=True)
    return _isolated_home


def _distill(out: Path) -> None:
    args = ["distill", "--from-captures", "--count", "5", "--out", str(out), "--concurrency", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output


def test_erasing_a_person_removes_their_rows_from_distilled_data(
    tmp_path: Path, home: Path, captured: dict[str, str], standin: None
) -> None:
    out = tmp_path / "distilled.jsonl"
    _distill(out)
    assert {r["metadata"]["capture_id"] for r in _rows(out)} == set(captured.values())
    assert EVE_SECRET.encode() in out.read_bytes()
    # A training run on this very file, as `openclone train` records it.
    save_record(
        TrainedModel(name="support-bot", base="smollm2-135m-instruct", base_path="base",
                     adapter_path="adapter", dataset=str(out), dataset_sha256=file_sha256(out)),
        home,
    )  # fmt: skip

    result = runner.invoke(app, ["erase", "--tenant", "acme", "--user", "eve", "--yes"])

    assert result.exit_code == 0, result.output
    assert "distilled dataset" in result.output
    assert EVE_SECRET.encode() not in out.read_bytes()  # grep -a finds nothing
    assert [r["metadata"]["capture_id"] for r in _rows(out)] == [captured["bob"]]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert not list(tmp_path.glob(".*.tmp"))  # rewritten in place, atomically (files.atomic_write)

    audit = runner.invoke(app, ["audit", "erasures"], terminal_width=400)
    assert audit.exit_code == 0, audit.output
    assert "distilled dataset" in audit.output and str(out.resolve()) in audit.output
    assert "(rewritten)" in audit.output
    assert "trained run support-bot (smollm2-135m-instruct:support-bot)" in audit.output
    assert "retrain it" in audit.output


def test_rows_written_before_a_crash_are_dropped_when_the_run_continues(
    tmp_path: Path, home: Path, captured: dict[str, str], standin: None
) -> None:
    """A session killed before it registered its file: the erasure cannot find it, so the
    next session of the run drops the erased person's rows when it registers the file."""
    out = tmp_path / "distilled.jsonl"
    _distill(out)
    store = open_store(None, home)
    try:  # as if the session had died before registering: no record of the file
        with store.session() as s:
            s.execute(delete(ExportItem))
    finally:
        store.close()
    assert runner.invoke(app, ["erase", "--tenant", "acme", "--user", "eve", "-y"]).exit_code == 0
    assert EVE_SECRET.encode() in out.read_bytes()  # nothing told the erasure about it

    _distill(out)  # the same command again continues the run

    assert EVE_SECRET.encode() not in out.read_bytes()
    assert [r["metadata"]["capture_id"] for r in _rows(out)] == [captured["bob"]]
