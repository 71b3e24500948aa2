"""Erasure reaches a loop's evaluation reports and stops a tenant's training worker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from openclone.store import Store
from openclone.store.derived import register_report
from openclone.store.fine_tuning import insert_job
from openclone.store.lineage import affected_exports
from openclone.store.privacy import erase
from openclone.store.tables import FineTuningJob
from store.helpers import capture_ids, exchange, write

EVE = "EVE-canary-7731 my parole officer's number"
ANA = "how do I reset my router"


def _write_one(store: Store, text: str, user: str) -> str:
    """Write one capture; its id."""
    before = capture_ids(store)
    write(store, exchange(text, user=user))
    [new] = capture_ids(store) - before
    return new


def _row(index: int, prompt: str, row_id: str | None) -> dict[str, object]:
    return {"index": index, "prompt": prompt, "id": row_id, "score": 1.0,
            "candidate": {"text": f"answer to {prompt}"}, "judge_replies": [prompt]}  # fmt: skip


def test_an_erasure_drops_a_persons_rows_from_a_loops_eval_report(
    store: Store, tmp_path: Path
) -> None:
    eve, ana = _write_one(store, EVE, "eve"), _write_one(store, ANA, "ana")
    out = tmp_path / "run-1" / "eval-vs-teacher"
    out.mkdir(parents=True)
    rows = [_row(0, EVE, eve), _row(1, ANA, ana), _row(2, "a fixed prompt", "general-1")]
    report = {"candidate": "c@1", "reference": "t", "n": 3, "win_rate": 0.83,
              "ci_low": 0.5, "ci_high": 1.0, "rows": rows}  # fmt: skip
    (out / "report.json").write_text(json.dumps(report))
    (out / "report.md").write_text(f"| 1 | {EVE} |")
    (out / "report.html").write_text(f"<td>{EVE}</td>")
    registered = register_report(store, out / "report.json", {eve, ana}, actor="loop:support",
                                 source={"loop": "support", "run": 1})  # fmt: skip
    assert registered is not None and registered.rows == 3

    result = erase(store, actor="admin", tenant="acme", user="eve")

    run = tmp_path / "run-1"
    holding = [p.name for p in run.rglob("*") if p.is_file() and EVE in p.read_text()]
    assert holding == []
    kept = json.loads((out / "report.json").read_text())
    assert [r["id"] for r in kept["rows"]] == [ana, "general-1"]
    # The figures the gate weighed stay as computed; the report says rows are gone.
    assert (kept["win_rate"], kept["n"], kept["erased_rows"]) == (0.83, 3, 1)
    assert registered.id in result.exports
    [listed] = affected_exports(store)
    assert (listed.kind, listed.path) == ("eval report", str((out / "report.json").resolve()))


def test_erasing_a_tenant_kills_its_fine_tuning_jobs_worker(store: Store, tmp_path: Path) -> None:
    job_dir = tmp_path / "jobs" / "train-1"
    job_dir.mkdir(parents=True)
    # A stand-in worker: a process leading its own group, as the job runner starts one.
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                              start_new_session=True)  # fmt: skip
    try:
        stat = Path(f"/proc/{worker.pid}/stat").read_text().rsplit(")", 1)[1].split()
        status = {"id": "train-1", "kind": "train", "state": "running", "pid": worker.pid,
                  "pid_start": int(stat[19])}  # fmt: skip
        (job_dir / "status.json").write_text(json.dumps(status))
        row = FineTuningJob(id="ftjob-1", model="base", training_file="file-1", seed=1,
                            status="running", ft_name="ft:base:acme::ftjob-1", run_name="ft-1",
                            run_job="train-1", paths=[str(job_dir)])  # fmt: skip
        insert_job(store, "acme", row, ["Created fine-tuning job: ftjob-1"])

        result = erase(store, actor="admin", tenant="acme")

        assert result.counts["fine_tuning_jobs"] == 1
        # Killed, not left training (the erasure reaped its own child, so no exit code:
        # that wait() returns at all, long before the sleep ends, is the proof).
        worker.wait(timeout=30)
        assert not job_dir.exists()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
