"""Reports: JSON with the keys tools read, Markdown, and a self-contained, escaped HTML page."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from evaluate.eval_helpers import StandInClient
from openclone.evaluate import EvalItem, evaluate_pair, write_reports
from openclone.schema import ChatCompletionRequest, ChatMessage

EVIL = "<script>alert('pwned')</script> & <b>bold</b> | pipe"


def _reply(req: ChatCompletionRequest) -> str:
    if req.model == "judge":
        return "VERDICT: A" if "<answer_a>\n" + EVIL in req.messages[-1].text() else "VERDICT: B"
    return EVIL if req.model == "cand" else "a plain answer"


def test_reports_are_written_and_model_text_is_escaped(tmp_path: Path) -> None:
    items = [
        EvalItem([ChatMessage(role="user", content="Say <hi>")], "Say <hi>", "<ref>", "p1", "x<y"),
        EvalItem([ChatMessage(role="user", content="Again")], "Again"),
    ]
    report = asyncio.run(evaluate_pair(StandInClient(_reply), "cand", "re<f>", "judge", items))
    assert report.win_rate == 1.0 and report.n == 2
    paths = write_reports(report, tmp_path / "out")

    data = json.loads(paths["json"].read_text())
    assert {"win_rate", "ci_low", "ci_high", "n", "rows", "lc_win_rate", "unparsed"} <= set(data)
    assert data["rows"][0]["candidate"]["text"] == EVIL
    assert data["rows"][0]["candidate"]["length"] == len(EVIL)
    assert data["rows"][0]["metrics"]["candidate"]["exact_match"] == 0.0

    page = paths["html"].read_text()
    assert "<script" not in page and "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in page
    assert "<b>bold</b>" not in page and "re&lt;f&gt;" in page and "x&lt;y" in page
    assert "<svg" in page and "<style>" in page
    # Self-contained: no external stylesheet, script, image or font.
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page and "<link" not in page and "src=" not in page

    md = paths["markdown"].read_text()
    assert "&lt;script&gt;" in md and "\\| pipe" in md and "| 100.0% |" in md


def test_an_empty_evaluation_still_renders(tmp_path: Path) -> None:
    report = asyncio.run(
        evaluate_pair(StandInClient(lambda req: "?"), "cand", "ref", "judge", ["q"])
    )
    assert report.n == 0 and report.win_rate is None and report.ci_low is None
    paths = write_reports(report, tmp_path)
    assert json.loads(paths["json"].read_text())["win_rate"] is None
    assert "n/a" in paths["html"].read_text()
