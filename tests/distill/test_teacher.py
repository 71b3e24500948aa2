"""The teacher as a service: retries with backoff, give-up, timeouts, pacing and the bill."""

from __future__ import annotations

import asyncio

import pytest

from distill.standin import StandInTeacher, rate_limited, server_error
from openclone.distill import DistillError, Price, RetryPolicy, Teacher
from openclone.distill.teacher import TeacherFailed, TeacherRejected, TeacherUnavailable
from openclone.errors import ContextLengthExceeded, EngineError, ModelNotFound

ASK = [{"role": "user", "content": "Say something useful about the sea."}]


class Sleeps:
    """Records the waits the teacher asks for instead of waiting (time is not under test)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def _teacher(client: StandInTeacher, sleeps: Sleeps, **kw: object) -> Teacher:
    retry = kw.pop("retry", RetryPolicy(max_attempts=4, backoff=1.0, backoff_max=3.0))
    return Teacher(client, "standin", retry=retry, sleep=sleeps, **kw)  # type: ignore[arg-type]


def _ask(teacher: Teacher) -> object:
    return asyncio.run(teacher.ask(ASK, temperature=0.5, max_tokens=50, kind="answer"))


def test_429_and_retryable_5xx_are_retried_with_growing_jittered_backoff() -> None:
    client = StandInTeacher(
        seed_instruction="x", fail={1: rate_limited(), 2: server_error(), 3: rate_limited()}
    )
    sleeps = Sleeps()
    teacher = _teacher(client, sleeps, price=Price(2.0, 8.0))
    reply = _ask(teacher)
    assert reply.text.startswith("A careful answer")  # type: ignore[attr-defined]
    assert client.calls == 4 and teacher.account.retries == 3
    # Ceilings 1, 2, 3 (capped): each wait between half the ceiling and the ceiling.
    for wait, ceiling in zip(sleeps.waits, [1.0, 2.0, 3.0], strict=True):
        assert ceiling / 2 <= wait <= ceiling
    account = teacher.account
    assert account.requests == {"answer": 1} and account.failed == 0
    assert (account.prompt_tokens, account.completion_tokens) == (
        client.prompt_tokens,
        client.completion_tokens,
    )
    assert account.cost_usd == pytest.approx(
        (client.prompt_tokens * 2.0 + client.completion_tokens * 8.0) / 1e6
    )


def test_a_request_that_keeps_failing_is_skipped_then_the_run_gives_up() -> None:
    client = StandInTeacher(seed_instruction="x", fail={n: server_error() for n in range(1, 50)})
    sleeps = Sleeps()
    teacher = _teacher(
        client, sleeps, retry=RetryPolicy(max_attempts=2, backoff=0, give_up_after=2)
    )
    with pytest.raises(TeacherFailed, match="failed 2 time"):
        _ask(teacher)
    with pytest.raises(TeacherUnavailable, match="2 requests in a row failed"):
        _ask(teacher)
    assert teacher.account.failed == 2 and client.calls == 4


def test_a_success_resets_the_failures_in_a_row() -> None:
    client = StandInTeacher(seed_instruction="x", fail={1: server_error(), 3: server_error()})
    teacher = _teacher(
        client, Sleeps(), retry=RetryPolicy(max_attempts=1, backoff=0, give_up_after=2)
    )
    with pytest.raises(TeacherFailed):
        _ask(teacher)
    _ask(teacher)  # call 2 succeeds
    with pytest.raises(TeacherFailed):  # not TeacherUnavailable: the failures were not in a row
        _ask(teacher)


def test_a_non_retryable_engine_error_is_not_retried() -> None:
    client = StandInTeacher(seed_instruction="x", fail={1: EngineError("bad reply")})
    teacher = _teacher(client, Sleeps())
    with pytest.raises(TeacherFailed, match="bad reply"):
        _ask(teacher)
    assert client.calls == 1


def test_timeouts_are_retried_then_fail() -> None:
    client = StandInTeacher(seed_instruction="x", delay=5.0)
    teacher = _teacher(client, Sleeps(), retry=RetryPolicy(max_attempts=2, backoff=0, timeout=0.05))
    with pytest.raises(TeacherFailed, match=r"no reply within 0\.05 s"):
        _ask(teacher)
    assert client.calls == 2 and teacher.account.retries == 1


def test_invalid_requests_are_rejected_and_unknown_models_are_fatal() -> None:
    client = StandInTeacher(seed_instruction="x", fail={1: ContextLengthExceeded("too long")})
    teacher = _teacher(client, Sleeps())
    with pytest.raises(TeacherRejected, match="too long"):
        _ask(teacher)
    assert teacher.account.rejected == 1
    client = StandInTeacher(
        seed_instruction="x", fail={1: ModelNotFound("nope")}, models=["a", "b"]
    )
    with pytest.raises(
        DistillError, match="unknown teacher model 'standin'; the catalog has: a, b"
    ):
        _ask(_teacher(client, Sleeps()))
    with pytest.raises(DistillError, match="the catalog has: a, b"):
        _teacher(client, Sleeps()).check_model()


def test_requests_per_minute_spaces_the_starts() -> None:
    client = StandInTeacher(seed_instruction="x")
    sleeps = Sleeps()
    teacher = _teacher(client, sleeps, requests_per_minute=600, concurrency=5)  # one per 0.1 s

    async def five() -> None:
        await asyncio.gather(
            *(teacher.ask(ASK, temperature=0, max_tokens=5, kind="answer") for _ in range(5))
        )

    asyncio.run(five())
    # The fake sleep returns at once, so each start is booked 0.1 s after the one before.
    assert sorted(sleeps.waits) == pytest.approx([0.1, 0.2, 0.3, 0.4], abs=0.02)
