"""The teacher as a service: requests in flight, a rate limit, retries, and the bill.

Everything the distill loops ask goes through :meth:`Teacher.ask`, which holds one of
``concurrency`` slots while a request runs, spaces request starts to honour a
requests-per-minute limit, and retries 429s, retryable engine errors (5xx, dropped
connections) and timeouts with exponential backoff and jitter. A request that exhausts its
tries raises :class:`TeacherFailed` and the caller moves on; when several in a row do, the
teacher is down and :class:`TeacherUnavailable` stops the run (a re-run resumes it).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import ValidationError

from openclone.config import Price, Settings
from openclone.distill.config import DistillError, RetryPolicy
from openclone.errors import (
    AuthenticationError,
    EngineError,
    InvalidRequestError,
    ModelNotFound,
    PermissionDenied,
    UnsupportedParameter,
)
from openclone.model_names import parse_model_name
from openclone.routing.client import ChatClient, HTTPClient, RouterClient
from openclone.routing.retry import Attempts, RetriesExhausted, chat_with_retries
from openclone.schema import ChatCompletion, ChatCompletionRequest

__all__ = [
    "Account",
    "Reply",
    "Teacher",
    "TeacherFailed",
    "TeacherRejected",
    "TeacherUnavailable",
    "open_teacher_client",
]


class TeacherFailed(DistillError):
    """One request failed after every retry; the item it was for is skipped."""


class TeacherUnavailable(DistillError):
    """Several requests in a row failed after every retry: the run stops, resumable."""


class TeacherRejected(DistillError):
    """The teacher refused this one request as invalid (a 400, e.g. context too long)."""


@dataclass(frozen=True)
class Reply:
    text: str
    finish_reason: str | None
    refusal: str | None = None  # OpenAI's explicit refusal, in place of content

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


@dataclass
class Account:
    """Requests, tokens and dollars of a run; restored from the state file on resume."""

    requests: dict[str, int] = field(default_factory=dict)  # answered requests by kind
    retries: int = 0
    failed: int = 0  # requests that exhausted their tries
    rejected: int = 0  # requests the teacher refused as invalid
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Account:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class Teacher:
    def __init__(
        self,
        client: ChatClient,
        model: str,
        *,
        concurrency: int = 8,
        requests_per_minute: float | None = None,
        retry: RetryPolicy | None = None,
        price: Price | None = None,
        account: Account | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.client = client
        self.model = model
        self.retry = retry or RetryPolicy()
        self.price = price or Price()
        self.account = account or Account()
        self._slots = asyncio.Semaphore(concurrency)
        self._interval = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self._next_start = 0.0
        self._failures_in_row = 0
        self._rng = rng or random.Random()
        self._sleep = sleep

    def check_model(self) -> None:
        """Fail early, listing the choices, when the client knows its models and this isn't one."""
        known = self.client.models()
        # BASE:ADAPTER names and models discovered while serving are not listed up front.
        if known and self.model not in known and ":" not in self.model:
            raise DistillError(_unknown_model(self.model, known))

    async def ask(
        self, messages: Sequence[dict[str, Any]], *, temperature: float, max_tokens: int, kind: str
    ) -> Reply:
        try:
            request = ChatCompletionRequest(
                model=self.model,
                messages=list(messages),  # type: ignore[arg-type]  # validated here
                temperature=temperature,
                max_tokens=max_tokens,
            )
        except ValidationError as exc:
            self.account.rejected += 1
            raise TeacherRejected(f"not a valid chat request: {exc.errors()[0]['msg']}") from exc
        policy = self.retry
        attempts = Attempts(
            tries=policy.max_attempts,
            backoff=policy.backoff,
            backoff_max=policy.backoff_max,
            timeout=policy.timeout,
        )
        tries = 1

        def retried(_: BaseException) -> None:
            nonlocal tries
            tries += 1
            self.account.retries += 1

        try:
            result = await chat_with_retries(
                self.client,
                request,
                attempts,
                slot=self._turn,
                on_retry=retried,
                sleep=self._sleep,
                rng=self._rng,
            )
        except RetriesExhausted as exc:
            last, attempt = _describe(exc.last, policy.timeout), exc.tries
        except (ModelNotFound, AuthenticationError, PermissionDenied) as exc:
            raise DistillError(self._fatal(exc)) from exc
        except UnsupportedParameter as exc:
            raise DistillError(f"the teacher {self.model!r}: {exc.message}") from exc
        except InvalidRequestError as exc:
            self.account.rejected += 1
            raise TeacherRejected(exc.message) from exc
        except EngineError as exc:  # not retryable: another try would fail the same way
            last, attempt = _describe(exc, policy.timeout), tries
        else:
            self._failures_in_row = 0
            return self._book(result, kind)
        self.account.failed += 1
        self._failures_in_row += 1
        message = f"the teacher {self.model!r} failed {attempt} time(s): {last}"
        if self._failures_in_row >= policy.give_up_after:
            raise TeacherUnavailable(
                f"{message}; {self._failures_in_row} requests in a row failed, stopping "
                "(re-run the same command to continue)"
            )
        raise TeacherFailed(message)

    @contextlib.asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        """One try's turn: a concurrency slot, and a start spaced by the rate limit."""
        async with self._slots:
            await self._pace()
            yield

    async def _pace(self) -> None:
        if not self._interval:
            return
        now = time.monotonic()
        start = max(now, self._next_start)
        self._next_start = start + self._interval
        if start > now:
            await self._sleep(start - now)

    def _book(self, result: ChatCompletion, kind: str) -> Reply:
        account = self.account
        account.requests[kind] = account.requests.get(kind, 0) + 1
        usage = result.usage
        if usage is not None:
            account.prompt_tokens += usage.prompt_tokens
            account.completion_tokens += usage.completion_tokens
            account.cost_usd += self.price.cost(usage.prompt_tokens, usage.completion_tokens)
        if not result.choices:
            return Reply("", None)
        choice = result.choices[0]
        return Reply(choice.message.content or "", choice.finish_reason, choice.message.refusal)

    def _fatal(self, exc: ModelNotFound | AuthenticationError | PermissionDenied) -> str:
        if isinstance(exc, ModelNotFound):
            return _unknown_model(self.model, self.client.models())
        return f"the teacher {self.model!r} refused the request: {exc.message}"


def _unknown_model(model: str, known: list[str]) -> str:
    choices = f"; the catalog has: {', '.join(known)}" if known else ""
    return f"unknown teacher model {model!r}{choices} (choose one with --teacher)"


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no reply within {timeout:g} s"
    return f"{type(exc).__name__}: {exc}"


async def open_teacher_client(
    settings: Settings, teacher: str, base_url: str | None = None, api_key: str | None = None
) -> ChatClient:
    """A client that reaches ``teacher``: the server at ``base_url``, else the catalog's
    router in this process with only the teacher loaded (the other models are not needed)."""
    if base_url:
        return HTTPClient(base_url, api_key, timeout=settings.request_timeout)
    name = parse_model_name(teacher)
    entry = settings.model(name.base if name.adapter else teacher)
    if entry is None:
        raise DistillError(_unknown_model(teacher, [m.name for m in settings.models]))
    only = settings.model_copy(update={"models": [entry], "default_model": entry.name})
    return await RouterClient.start(only)
