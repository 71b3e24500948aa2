"""``openclone import``: stored completions from one real server into another's store (twice,
nothing added twice), fine-tuning and Evals files with bad rows named by line, fine-tunes
as train configs."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import BUNDLED, Server, start_server, stop_server
from openai import OpenAI
from openai.types.fine_tuning import FineTuningJob
from sqlalchemy import select
from typer.testing import CliRunner

from openclone.cli import app
from openclone.data.import_server import fine_tune_config
from openclone.evaluate.sets import read_items
from openclone.store import open_store
from openclone.store.keys import create_key
from openclone.store.tables import Capture
from openclone.train.config import TrainConfig

runner = CliRunner()

WEATHER = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
CHAT = {
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Lyon.", "weight": 0},
        {"role": "user", "content": "Really?"},
        {"role": "assistant", "content": "Paris.", "weight": 1},
    ]
}
TOOLS = {
    "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
         "function": {"name": "weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "cold"},
        {"role": "assistant", "content": "Cold."},
    ],
    "tools": [WEATHER],
}  # fmt: skip
PREFERENCE = {
    "input": {"messages": [{"role": "user", "content": "Hi"}]},
    "preferred_output": [{"role": "assistant", "content": "Hello!"}],
    "non_preferred_output": [{"role": "assistant", "content": "What."}],
}
EVAL = {"input": [{"role": "user", "content": "2+2?"}], "ideal": ["4", "four"]}


def _import(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(app, ["import", *args, "--json"], env=env)
    start = result.stdout.find("{")
    assert start >= 0, result.output
    return result.exit_code, json.loads(result.stdout[start:])


def test_files_become_datasets_with_bad_rows_named_by_line(tmp_path: Path) -> None:
    src = tmp_path / "legacy.jsonl"
    lines = [json.dumps(r) for r in (CHAT, TOOLS, PREFERENCE)]
    lines += ['{"messages": [', json.dumps({"messages": [{"role": "robot", "content": "x"}]})]
    lines += [json.dumps(EVAL), "", json.dumps(CHAT)]  # a blank line, and a row twice
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"

    code, report = _import(str(src), "--tenant", "acme", "--out", str(out))
    assert code == 0
    assert report["counts"] == {
        "chat": {"added": 2, "existing": 1, "rejected": 2},
        "preference": {"added": 1, "existing": 0, "rejected": 0},
        "eval": {"added": 1, "existing": 0, "rejected": 0},
    }
    where = [r["where"] for r in report["rejected"]]
    assert where == ["legacy.jsonl, line 4", "legacy.jsonl, line 5"]
    assert "not valid JSON" in report["rejected"][0]["reason"]
    assert "role" in report["rejected"][1]["reason"]

    chat = [json.loads(x) for x in (out / "legacy.jsonl").read_text().splitlines()]
    assert chat == [CHAT, TOOLS]  # weights and tools kept as they were
    kept = [json.loads(x) for x in (out / "legacy.preference.jsonl").read_text().splitlines()]
    assert kept == [PREFERENCE]
    (item,) = read_items(out / "legacy.eval.jsonl")
    assert item.prompt == "2+2?" and item.reference == "4"

    code, again = _import(str(src), "--tenant", "acme", "--out", str(out))
    assert code == 0
    assert {k: c["added"] for k, c in again["counts"].items()} == {
        "chat": 0, "preference": 0, "eval": 0
    }  # fmt: skip
    assert len((out / "legacy.jsonl").read_text().splitlines()) == 2

    strict = tmp_path / "strict"
    code, report = _import(str(src), "--out", str(strict), "--strict")
    assert code == 3 and not strict.exists()
    junk = tmp_path / "junk.jsonl"
    junk.write_text('{"prompt": "old format", "completion": "x"}\n')
    code, report = _import(str(junk), "--out", str(tmp_path / "junk"))
    assert code == 3 and report["rejected"][0]["where"] == "junk.jsonl, line 1"


def test_a_fine_tune_becomes_a_train_config(tmp_path: Path) -> None:
    job = FineTuningJob.model_validate({
        "id": "ftjob-abc", "object": "fine_tuning.job", "created_at": 1, "finished_at": 2,
        "model": "gpt-4o-mini-2024-07-18", "organization_id": "org-1", "result_files": [],
        "seed": 7, "status": "succeeded", "training_file": "file-train",
        "validation_file": None, "fine_tuned_model": "ft:gpt-4o-mini-2024-07-18:acme:support:abc",
        "hyperparameters": {"n_epochs": "auto"},
        "method": {"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 1.8}}},
    })  # fmt: skip
    text = fine_tune_config(job, {"training": None}, "https://api.openai.com/v1")
    path = tmp_path / "fine-tunes" / "ftjob-abc.toml"
    path.parent.mkdir()
    path.write_text(text)
    config = TrainConfig.from_toml(path, home=tmp_path)
    assert config.name == "support" and config.epochs == 3 and config.batch_size == 4
    assert (
        config.seed == 7 and config.dataset == tmp_path / "fine-tunes" / ".." / "file-train.jsonl"
    )
    assert "gpt-4o-mini-2024-07-18" in text and "1.8" in text and "put a copy" in text


@pytest.mark.slow
def test_stored_completions_move_between_servers_once(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    run = uuid.uuid4().hex
    words = ("one", "two", "three")
    made = [
        source.chat.completions.create(
            model=BUNDLED, max_tokens=4, temperature=0, store=True,
            messages=[{"role": "user", "content": f"Say {word}."}],
            metadata={"run": run, "word": word},
        )
        for word in words
    ]  # fmt: skip
    target = tmp_path / "target"
    monkeypatch.setenv("OPENCLONE_HOME", str(target / "home"))
    args = ("--base-url", server.base_url, "--tenant", "acme", "--api-key-env", "SOURCE_KEY")
    code, first = _import(*args, env={"SOURCE_KEY": "unused"})
    assert code == 0 and first["rejected"] == []
    counts = first["counts"]["completions"]
    assert counts["added"] >= 3  # the source may hold other tests' stored completions too
    code, second = _import(*args, env={"SOURCE_KEY": "unused"})
    assert code == 0
    assert second["counts"]["completions"] == {
        "added": 0, "existing": counts["added"] + counts["existing"], "rejected": 0
    }  # fmt: skip

    store = open_store(None, target / "home")
    try:
        with store.session() as s:
            imported = list(s.scalars(select(Capture)))
            assert len(imported) == counts["added"]
            assert not any(c.consent for c in imported)  # acme's default: not for training
        _, key = create_key(store, "acme", "ana")
    finally:
        store.close()
    other = start_server(f'[[models]]\nname = "{BUNDLED}"\nengine = "llamacpp"\n', target)
    try:
        there = OpenAI(base_url=other.base_url, api_key=key, max_retries=0)
        listed = list(there.chat.completions.list(metadata={"run": run}))
        assert [c.id for c in listed] == [c.id for c in made]
        for mine, theirs, word in zip(made, listed, words, strict=True):
            assert theirs.choices[0].message.content == mine.choices[0].message.content
            assert theirs.metadata == {"run": run, "word": word}  # type: ignore[attr-defined]
        (message,) = there.chat.completions.messages.list(made[0].id)
        assert message.content == "Say one."
    finally:
        stop_server(other)
