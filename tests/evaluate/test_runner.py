"""evaluate_pair: the bundled model against itself for real; retries and faults with a stand-in."""

from __future__ import annotations

import asyncio

import pytest
from conftest import BUNDLED

from evaluate.eval_helpers import StandInClient, bundled_settings
from openclone.errors import ContextLengthExceeded, ModelNotFound, RateLimited, UnsupportedParameter
from openclone.evaluate import EvalReport, Price, evaluate_pair, load_prompt_set
from openclone.routing.client import RouterClient
from openclone.schema import ChatCompletionRequest


@pytest.mark.slow
def test_a_model_against_itself_wins_half_within_its_interval() -> None:
    items = load_prompt_set(limit=6).items
    price = Price(input=1.0, output=2.0)

    async def go() -> EvalReport:
        client = await RouterClient.start(bundled_settings())
        try:
            with pytest.raises(
                ModelNotFound, match=f"'no-such-model'; available models: {BUNDLED}"
            ):
                await evaluate_pair(
                    client, "no-such-model", BUNDLED, BUNDLED, items[:1], max_tokens=8
                )
            return await evaluate_pair(
                client, BUNDLED, BUNDLED, BUNDLED, items,
                concurrency=8, max_tokens=32, judge_max_tokens=24, judge_json=True,
                prices={BUNDLED: price},
            )  # fmt: skip
        finally:
            await client.aclose()

    report = asyncio.run(go())
    # The JSON verdict is enforced by llama.cpp's grammar: every reply parses.
    assert (report.n, report.unparsed, report.errors) == (6, 0, 0)
    assert report.ci_low is not None and report.ci_high is not None
    assert report.ci_low <= 0.5 <= report.ci_high
    assert report.win_rate == pytest.approx(0.5, abs=0.2)
    for row in report.rows:
        assert row.candidate and row.reference and row.candidate.text
        assert row.candidate.latency_s > 0 and row.candidate.completion_tokens > 0
        assert row.candidate.cost == pytest.approx(
            (row.candidate.prompt_tokens * 1.0 + row.candidate.completion_tokens * 2.0) / 1e6
        )
        assert len(row.verdicts) == 2 and all(v in ("A", "B", "TIE") for v in row.verdicts)
        assert ("rouge_l" in row.metrics.get("candidate", {})) == (row.expected is not None)
    assert any(row.expected for row in report.rows)
    assert report.summary["candidate"].answers == 6
    assert report.summary["candidate"].cost_total > 0 and report.judge_cost > 0


def _judge_prefers_longer(req: ChatCompletionRequest) -> str:
    text = req.messages[-1].text()
    a = text.split("<answer_a>")[1].split("</answer_a>")[0]
    b = text.split("<answer_b>")[1].split("</answer_b>")[0]
    return "Longer is better here.\nVERDICT: " + ("A" if len(a) > len(b) else "B")


def test_retries_transient_errors_and_records_hard_ones() -> None:
    failures = {"cand": 2}

    def reply(req: ChatCompletionRequest) -> str:
        prompt = req.messages[-1].text()
        if req.model == "judge":
            return _judge_prefers_longer(req)
        if "too long" in prompt and req.model == "cand":
            raise ContextLengthExceeded("the prompt is too long for this model")
        if req.model == "cand" and failures["cand"]:
            failures["cand"] -= 1
            raise RateLimited("queue full")
        return "a long and detailed answer" if req.model == "cand" else "short"

    client = StandInClient(reply)
    report = asyncio.run(
        evaluate_pair(client, "cand", "ref", "judge", ["q1", "q2", "too long"], backoff=0.001)
    )
    assert failures["cand"] == 0  # both 429s were retried
    assert (report.n, report.wins, report.errors) == (2, 2, 1)
    assert report.win_rate == 1.0 and report.rows[2].score is None
    assert "ContextLengthExceeded" in (report.rows[2].error or "")
    # Every request is greedy with the fixed seed; judge replies are capped separately.
    assert all(r.temperature == 0 and r.seed == 0 for r in client.requests)


def test_position_bias_cancels_and_unparsed_verdicts_are_missing() -> None:
    def reply(req: ChatCompletionRequest) -> str:
        if req.model != "judge":
            return f"answer from {req.model}"
        prompt = req.messages[-1].text()
        return "I like the first one.\nVERDICT: A" if "q1" in prompt else "no idea"

    report = asyncio.run(evaluate_pair(StandInClient(reply), "cand", "ref", "judge", ["q1", "q2"]))
    assert report.rows[0].verdicts == ["A", "A"] and report.rows[0].score == 0.5
    assert report.rows[1].score is None
    assert (report.n, report.ties, report.unparsed, report.errors) == (1, 1, 2, 0)


def test_an_unreadable_verdict_is_asked_again_before_it_is_dropped() -> None:
    def reply(req: ChatCompletionRequest) -> str:
        if req.model != "judge":
            return f"answer from {req.model}"
        return "VERDICT: B" if req.temperature else "hmm, both are fine"  # readable on retry

    client = StandInClient(reply)
    report = asyncio.run(
        evaluate_pair(
            client, "cand", "ref", "judge", ["q1", "q2"], prices={"judge": Price(1.0, 1.0)}
        )
    )
    assert (report.n, report.unparsed) == (2, 0)
    retries = [r for r in client.requests if r.model == "judge" and r.temperature]
    assert len(retries) == 4 and all(r.seed == 1 for r in retries)  # each verdict once more
    # Both replies of each verdict are paid for: 10 prompt tokens plus one per word of
    # "hmm, both are fine" (4) and of "VERDICT: B" (2), four times each.
    assert report.judge_cost == pytest.approx(4 * (14 + 12) / 1e6)


def test_a_judge_that_cannot_hold_to_json_is_asked_in_free_form() -> None:
    def reply(req: ChatCompletionRequest) -> str:
        if req.model != "judge":
            return f"answer from {req.model}"
        if req.response_format is not None:
            raise UnsupportedParameter("cannot enforce json_schema", param="response_format")
        return "VERDICT: A"

    client = StandInClient(reply)
    report = asyncio.run(evaluate_pair(client, "cand", "ref", "judge", ["q1", "q2", "q3"]))
    assert (report.n, report.unparsed, report.errors) == (3, 0, 0)
    assert report.settings["judge_json"] is True  # asked for; the engine said no
    enforced = [r for r in client.requests if r.response_format is not None]
    assert 1 <= len(enforced) <= 6  # refused early: later verdicts are not asked that way
    # A refusal is not a try: every verdict was then asked greedily, with the run's seed.
    free = [r for r in client.requests if r.model == "judge" and r.response_format is None]
    assert len(free) == 6 and all(r.temperature == 0 and r.seed == 0 for r in free)
