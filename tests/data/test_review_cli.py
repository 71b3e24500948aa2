"""``openclone data review``: a person reviews a dataset from the terminal."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from openclone.cli import app

runner = CliRunner()


def _review(*args: str) -> str:
    result = runner.invoke(app, ["data", "review", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_review_from_the_terminal_add_list_edit_approve_export(tmp_path: Path) -> None:
    path = tmp_path / "distilled.jsonl"
    questions = ["How do I reset my password?", "Where is my refund?", "Can I pay by card?"]
    path.write_text("".join(
        json.dumps({"messages": [{"role": "user", "content": q},
                                 {"role": "assistant", "content": f"answer {i}"}],
                    "metadata": {"teacher": "t"}}) + "\n"
        for i, q in enumerate(questions)
    ))  # fmt: skip
    added = _review("add", str(path))
    dataset = added.split()[1]
    assert "3 examples" in added
    listed = json.loads(_review("list", "--json"))["data"]  # the datasets under review
    assert [(d["id"], d["rows"]) for d in listed] == [(dataset, 3)]
    assert dataset in _review("list")

    page = json.loads(_review("list", dataset, "--search", "refund", "--json"))
    assert [e["row"] for e in page["data"]] == [1] and page["total"] == 1
    _review("edit", dataset, "1", "--answer", "Refunds take 5 days.")
    assert "Refunds take 5 days." in _review("show", dataset, "1")
    assert "2 examples approved" in _review("approve", dataset, "0", "1")
    assert "1 examples rejected" in _review(
        "reject", dataset, "--all-matching", "--state", "pending"
    )

    out = tmp_path / "reviewed.jsonl"
    assert "wrote 2 approved examples" in _review("export", dataset, str(out))
    answers = [json.loads(line)["messages"][-1]["content"] for line in out.read_text().splitlines()]
    assert answers == ["answer 0", "Refunds take 5 days."]

    neither = runner.invoke(app, ["data", "review", "approve", dataset])
    assert neither.exit_code == 2 and "--all-matching" in neither.output
    unknown = runner.invoke(app, ["data", "review", "show", dataset, "7"])
    assert unknown.exit_code == 1 and "has no row 7" in unknown.output
