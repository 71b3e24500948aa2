"""Drift watch: a pinned model replays identically; an upstream that changed is caught."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from conftest import BUNDLED

from evaluate.eval_helpers import StandInClient, bundled_settings
from openclone.evaluate import BaselineError, DriftReport, watch
from openclone.routing.client import RouterClient
from openclone.schema import ChatCompletionRequest

PROMPTS = ["Name a colour.", "What is 2 + 2?", "Say hello to Ada."]


@pytest.mark.slow
def test_the_same_model_twice_does_not_drift(tmp_path: Path) -> None:
    baseline = tmp_path / "drift" / "base.json"

    async def go() -> tuple[DriftReport, DriftReport]:
        client = await RouterClient.start(bundled_settings())
        try:
            first = await watch(client, BUNDLED, PROMPTS, baseline, max_tokens=24)
            second = await watch(client, BUNDLED, PROMPTS, baseline, max_tokens=99)
            return first, second
        finally:
            await client.aclose()

    first, second = asyncio.run(go())
    assert first.created_baseline and not first.drifted
    recorded = json.loads(baseline.read_text())
    assert recorded["model"] == BUNDLED and recorded["max_tokens"] == 24  # pinned settings
    assert [a["prompt"] for a in recorded["answers"]] == PROMPTS
    assert not second.created_baseline and not second.drifted
    assert second.n == 3 and second.mean_similarity is not None and second.mean_similarity >= 0.9
    history = baseline.with_name("base.json.history.jsonl").read_text().splitlines()
    assert len(history) == 2 and json.loads(history[1])["drifted"] is False


def test_changed_upstream_answers_are_drift(tmp_path: Path) -> None:
    version = {"n": 1}

    def upstream(req: ChatCompletionRequest) -> str:
        # A stand-in closed API: after an unannounced update its answers change.
        q = req.messages[-1].text()
        if version["n"] == 1:
            return f"The answer to '{q}' is short and plain."
        return "Certainly! As a helpful assistant I would be delighted to help with that."

    client = StandInClient(upstream)
    path = tmp_path / "gpt.json"
    assert asyncio.run(watch(client, "gpt-x", PROMPTS, path)).created_baseline
    same = asyncio.run(watch(client, "gpt-x", PROMPTS, path))
    assert (same.drifted, same.mean_similarity, same.changed_share) == (False, 1.0, 0.0)
    version["n"] = 2
    changed = asyncio.run(watch(client, "gpt-x", PROMPTS, path, threshold=0.8))
    assert changed.drifted and changed.changed_share == 1.0
    assert changed.mean_similarity is not None and changed.mean_similarity < 0.5
    assert changed.rows[0].baseline and changed.rows[0].baseline.startswith("The answer to")
    # A prompt added after the baseline is reported, not compared.
    grown = asyncio.run(watch(client, "gpt-x", [*PROMPTS, "New?"], path))
    assert grown.n == 3 and grown.rows[-1].similarity is None


def test_a_baseline_of_another_model_or_set_is_refused(tmp_path: Path) -> None:
    client = StandInClient(lambda req: "ok")
    path = tmp_path / "b.json"
    asyncio.run(watch(client, "model-a", PROMPTS, path))
    with pytest.raises(BaselineError, match="recorded for model 'model-a', not 'model-b'"):
        asyncio.run(watch(client, "model-b", PROMPTS, path))
    with pytest.raises(BaselineError, match="none of these 1 prompts"):
        asyncio.run(watch(client, "model-a", ["unrelated"], path))
    path.write_text("{not json")
    with pytest.raises(BaselineError, match="not a drift baseline"):
        asyncio.run(watch(client, "model-a", PROMPTS, path))
