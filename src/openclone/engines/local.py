"""Shared machinery for engines that run a model in this process (llama.cpp, transformers).

A :class:`LocalEngine` owns one worker thread that runs the blocking model code; requests
reach it through a bounded queue and tokens come back to the event loop one event at a
time. The OpenAI semantics (chat templates, ``n``, ``stop``, tools, JSON output, usage,
context checks, chunk framing) live here once, so a backend only implements
``render_chat``, ``tokenize``, ``n_ctx`` and ``generate_sync``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from openclone.engines.adapter_pool import RetiredAdapters
from openclone.engines.base import Capabilities
from openclone.engines.tooling import (
    active_tools,
    call_schema,
    forced,
    messages_for_template,
    parse_tool_call,
    tools_system_message,
)
from openclone.errors import (
    ContextLengthExceeded,
    EngineError,
    InvalidRequestError,
    ModelNotFound,
    RateLimited,
    UnsupportedParameter,
)
from openclone.model_names import parse_model_name
from openclone.schema import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChoiceLogprobs,
    ChunkChoice,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    Delta,
    FinishReason,
    TokenLogprob,
    Usage,
    new_id,
)

__all__ = ["Finished", "GenParams", "Job", "LocalEngine", "TokenOut"]


@dataclass
class GenParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    top_logprobs: int | None = None  # None: no logprobs
    json_schema: dict[str, Any] | None = None
    json_object: bool = False
    logit_bias: dict[int, float] | None = None
    adapter: str | None = None  # ADAPTER of a BASE:ADAPTER request
    cache_scope: str | None = None  # only requests of the same scope share prompt prefixes


@dataclass
class TokenOut:
    text: str
    logprob: TokenLogprob | None = None


@dataclass
class Finished:
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int


Event = TokenOut | Finished | BaseException


@dataclass
class Job:
    prompt: list[int]
    params: GenParams
    emit: Callable[[Event], None]
    cancelled: threading.Event = field(default_factory=threading.Event)


class LocalEngine(ABC):
    """Base for in-process engines; subclasses provide the model-specific primitives."""

    capabilities: Capabilities
    model_name: str
    max_queue: int = 64
    runs_native_code: ClassVar[bool] = True  # served from a worker process by default

    def __init__(self) -> None:
        self._jobs: queue.Queue[Job | None] = queue.Queue(maxsize=self.max_queue)
        self._closed = False
        self._busy = False
        # Adapters removed while serving: a request naming one is refused, never answered
        # by the base (an unknown plain name would otherwise mean "the base").
        self._removed: set[str] = set()
        # The same adapters, for the scheduler to free once no running sequence uses them.
        self._retired = RetiredAdapters()
        self._worker = threading.Thread(
            target=self._work, name=f"engine-{self.model_name}", daemon=True
        )
        self._worker.start()

    # ---- what a backend implements -----------------------------------------------------

    @property
    @abstractmethod
    def n_ctx(self) -> int: ...

    @abstractmethod
    def render_chat(self, messages: list[dict[str, Any]]) -> tuple[str, list[str]]:
        """The prompt text for these messages and the template's own stop strings."""

    @abstractmethod
    def tokenize(self, text: str) -> list[int]: ...

    @abstractmethod
    def generate_sync(self, job: Job) -> None:
        """Run one job to completion in the worker thread, emitting TokenOut then Finished.

        Must check ``job.cancelled`` between tokens and stop when it is set.
        """

    def adapter_names(self) -> list[str]:
        """Adapters a request may name as ``BASE:ADAPTER``; none unless a backend loads some."""
        return []

    def close_sync(self) -> None:  # noqa: B027 - optional hook, most backends free on GC
        """Release the model (worker thread, after the last job)."""

    def _retire_adapter(self, name: str) -> None:
        """After ``name`` stops being offered (any thread): refuse requests naming it, and
        have the scheduler free it once no running sequence uses it (``self._retired``)."""
        self._removed.add(name)
        self._retired.put(name)
        self._wake()  # an idle scheduler frees it now, not at the next request

    # ---- worker ------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                self.close_sync()
                return
            if job.cancelled.is_set():
                continue
            self._busy = True
            try:
                self.generate_sync(job)
            except BaseException as exc:  # the worker must survive any one request
                job.emit(exc)
            finally:
                self._busy = False

    async def _run(
        self, prompt: list[int], params: GenParams
    ) -> AsyncGenerator[TokenOut | Finished, None]:
        if self._closed:
            raise EngineError("engine is shutting down", retryable=True, status_code=503)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Event] = asyncio.Queue()

        def emit(ev: Event) -> None:
            loop.call_soon_threadsafe(events.put_nowait, ev)

        job = Job(prompt=prompt, params=params, emit=emit)
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            raise RateLimited(
                f"model {self.model_name!r} has {self.max_queue} requests waiting; retry shortly"
            ) from None
        try:
            while True:
                ev = await events.get()
                if isinstance(ev, BaseException):
                    if isinstance(ev, (InvalidRequestError, EngineError)):
                        raise ev
                    raise EngineError(f"generation failed: {ev}") from ev
                yield ev
                if isinstance(ev, Finished):
                    return
        finally:
            # Reached on normal end, on error and when the consumer stops early (client left):
            # in the last case the worker sees the flag at its next token and frees the slot.
            job.cancelled.set()

    # ---- request → prompt ----------------------------------------------------------------
    # The Engine methods below call these through asyncio.to_thread: rendering a template and
    # tokenising a prompt of megabytes takes seconds, and on the event loop (the gateway's,
    # with isolation = "thread", or the worker's) it would stall every other request.

    def _params(self, req: ChatCompletionRequest | CompletionRequest, prompt_len: int) -> GenParams:
        room = self.n_ctx - prompt_len
        limit = req.token_limit
        if room <= 0 or (limit is not None and limit > room):
            asked = f" + {limit} max tokens" if limit is not None else ""
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self.n_ctx} tokens. However, you "
                f"requested {prompt_len + (limit or 0)} tokens ({prompt_len} in the messages{asked}). "
                "Please reduce the length of the messages or the max tokens.",
                param="messages" if isinstance(req, ChatCompletionRequest) else "prompt",
            )
        bias: dict[int, float] | None = None
        if req.logit_bias:
            try:
                bias = {int(k): float(v) for k, v in req.logit_bias.items()}
            except ValueError:
                raise InvalidRequestError(
                    "logit_bias keys must be token ids", param="logit_bias"
                ) from None
        # The router sends BASE:ADAPTER here only when the catalog has no model of that exact
        # name; a trained model is also served by its own name, which is its adapter's.
        adapter = ""
        if req.model != self.model_name:
            known = self.adapter_names()
            adapter = req.model if req.model in known else parse_model_name(req.model).adapter or ""
        if not adapter and req.model in self._removed:
            adapter = req.model
        if adapter and adapter not in self.adapter_names():
            have = ", ".join(self.adapter_names()) or "none"
            raise ModelNotFound(
                f"The model '{req.model}' does not exist: model {self.model_name!r} has no "
                f"adapter {adapter!r} (adapters: {have})",
                param="model",
            )
        return GenParams(
            max_tokens=limit if limit is not None else room,
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            seed=req.seed,
            stop=req.stop_list(),
            presence_penalty=req.presence_penalty or 0.0,
            frequency_penalty=req.frequency_penalty or 0.0,
            logit_bias=bias,
            adapter=adapter or None,
            cache_scope=req.cache_scope,
        )

    def _chat_prompt(self, req: ChatCompletionRequest) -> tuple[list[int], GenParams, list[Any]]:
        for i, m in enumerate(req.messages):
            if parts := m.non_text_parts():
                raise UnsupportedParameter(
                    f"model {self.model_name!r} reads text only; message {i} has {parts[0]} content",
                    param=f"messages[{i}].content",
                )
        if req.logprobs and not self.capabilities.logprobs:
            raise UnsupportedParameter(
                f"model {self.model_name!r} cannot return logprobs", param="logprobs"
            )
        fmt = req.response_format
        wants_json = fmt is not None and fmt.type != "text"
        if wants_json and not self.capabilities.json_schema:
            raise UnsupportedParameter(
                f"model {self.model_name!r} cannot enforce response_format {fmt.type!r}",  # type: ignore[union-attr]
                param="response_format",
            )
        tools = active_tools(req)
        if tools and forced(req) and not self.capabilities.json_schema:
            raise UnsupportedParameter(
                f"model {self.model_name!r} cannot force a tool call", param="tool_choice"
            )
        messages = list(req.messages)
        if tools:
            messages.insert(0, tools_system_message(tools, forced(req)))
        text, template_stops = self.render_chat(messages_for_template(messages))
        prompt = self.tokenize(text)
        params = self._params(req, len(prompt))
        params.stop = params.stop + [s for s in template_stops if s not in params.stop]
        if req.logprobs:
            params.top_logprobs = req.top_logprobs or 0
        if tools and forced(req):
            params.json_schema = call_schema(tools)
        elif fmt is not None and fmt.type == "json_schema":
            params.json_schema = fmt.json_schema.schema_  # type: ignore[union-attr]
        elif fmt is not None and fmt.type == "json_object":
            params.json_object = True
        return prompt, params, tools

    # ---- the Engine protocol -------------------------------------------------------------

    async def chat(self, req: ChatCompletionRequest) -> ChatCompletion:
        prompt, params, tools = await asyncio.to_thread(self._chat_prompt, req)
        choices: list[Choice] = []
        usage = Usage()
        for i in range(req.n):
            text, lps, finish, u = await self._collect(prompt, _with_seed(params, i))
            usage = Usage.of(u.prompt_tokens, usage.completion_tokens + u.completion_tokens)
            message = AssistantMessage(content=text)
            calls = parse_tool_call(text, tools) if tools else None
            if calls:
                message = AssistantMessage(content=None, tool_calls=calls)
                finish = "tool_calls"
            choices.append(
                Choice(
                    index=i,
                    message=message,
                    finish_reason=finish,
                    logprobs=ChoiceLogprobs(content=lps)
                    if params.top_logprobs is not None
                    else None,
                )
            )
        return ChatCompletion(model=req.model, choices=choices, usage=usage)

    async def stream(self, req: ChatCompletionRequest) -> AsyncGenerator[ChatCompletionChunk, None]:
        prompt, params, tools = await asyncio.to_thread(self._chat_prompt, req)
        cid, created = new_id("chatcmpl"), int(time.time())

        def chunk(choice: ChunkChoice | None, usage: Usage | None = None) -> ChatCompletionChunk:
            return ChatCompletionChunk(
                id=cid,
                created=created,
                model=req.model,
                choices=[choice] if choice else [],
                usage=usage,
            )

        completion_tokens = prompt_tokens = 0
        for i in range(req.n):
            finish: FinishReason = "stop"
            buffered: list[str] = []
            async with contextlib.aclosing(self._run(prompt, _with_seed(params, i))) as events:
                first = await anext(events)  # errors surface here, before the client sees a byte
                yield chunk(ChunkChoice(index=i, delta=Delta(role="assistant", content="")))
                async for ev in _prepend(first, events):
                    if isinstance(ev, Finished):
                        finish = ev.finish_reason
                        prompt_tokens = ev.prompt_tokens
                        completion_tokens += ev.completion_tokens
                    elif tools:
                        buffered.append(ev.text)  # a tool call is only known once complete
                    elif ev.text or ev.logprob:
                        lp = ChoiceLogprobs(content=[ev.logprob]) if ev.logprob else None
                        yield chunk(ChunkChoice(index=i, delta=Delta(content=ev.text), logprobs=lp))
            if tools:
                text = "".join(buffered)
                calls = parse_tool_call(text, tools)
                if calls:
                    finish = "tool_calls"
                    delta = Delta(
                        tool_calls=[{"index": k, **c.model_dump()} for k, c in enumerate(calls)]
                    )
                else:
                    delta = Delta(content=text)
                yield chunk(ChunkChoice(index=i, delta=delta))
            yield chunk(ChunkChoice(index=i, delta=Delta(), finish_reason=finish))
        if req.include_usage:
            yield chunk(None, Usage.of(prompt_tokens, completion_tokens))

    def _completion_prompt(self, req: CompletionRequest, text: str) -> tuple[list[int], GenParams]:
        if req.suffix:
            raise UnsupportedParameter(
                f"model {self.model_name!r} does not support suffix", param="suffix"
            )
        if req.logprobs is not None and not self.capabilities.logprobs:
            raise UnsupportedParameter(
                f"model {self.model_name!r} cannot return logprobs", param="logprobs"
            )
        prompt = self.tokenize(text)
        params = self._params(req, len(prompt))
        params.max_tokens = req.max_tokens or 16  # OpenAI's default for completions
        if len(prompt) + params.max_tokens > self.n_ctx:
            params.max_tokens = self.n_ctx - len(prompt)
        if req.logprobs is not None:
            params.top_logprobs = req.logprobs
        return prompt, params

    async def complete(self, req: CompletionRequest) -> Completion:
        choices: list[CompletionChoice] = []
        usage = Usage()
        for p_index, text_in in enumerate(req.prompts()):
            prompt, params = await asyncio.to_thread(self._completion_prompt, req, text_in)
            for i in range(req.n):
                text, lps, finish, u = await self._collect(prompt, _with_seed(params, i))
                usage = usage + u
                choices.append(
                    CompletionChoice(
                        index=p_index * req.n + i,
                        text=(text_in + text) if req.echo else text,
                        finish_reason=finish,
                        logprobs=_completion_logprobs(lps)
                        if params.top_logprobs is not None
                        else None,
                    )
                )
        return Completion(model=req.model, choices=choices, usage=usage)

    async def stream_complete(self, req: CompletionRequest) -> AsyncGenerator[Completion, None]:
        cid, created = new_id("cmpl"), int(time.time())
        usage = Usage()
        for p_index, text_in in enumerate(req.prompts()):
            prompt, params = await asyncio.to_thread(self._completion_prompt, req, text_in)
            for i in range(req.n):
                index = p_index * req.n + i
                if req.echo:
                    yield Completion(
                        id=cid,
                        created=created,
                        model=req.model,
                        choices=[CompletionChoice(index=index, text=text_in, finish_reason=None)],
                    )
                async with contextlib.aclosing(self._run(prompt, _with_seed(params, i))) as evs:
                    async for ev in evs:
                        if isinstance(ev, Finished):
                            usage = usage + Usage.of(ev.prompt_tokens, ev.completion_tokens)
                            choice = CompletionChoice(
                                index=index, text="", finish_reason=ev.finish_reason
                            )
                        elif ev.text or ev.logprob:
                            lp = _completion_logprobs([ev.logprob]) if ev.logprob else None
                            choice = CompletionChoice(
                                index=index, text=ev.text, finish_reason=None, logprobs=lp
                            )
                        else:
                            continue
                        yield Completion(id=cid, created=created, model=req.model, choices=[choice])
        if req.include_usage:
            yield Completion(id=cid, created=created, model=req.model, choices=[], usage=usage)

    async def _collect(
        self, prompt: list[int], params: GenParams
    ) -> tuple[str, list[TokenLogprob], FinishReason, Usage]:
        parts: list[str] = []
        lps: list[TokenLogprob] = []
        finish: FinishReason = "stop"
        usage = Usage()
        async with contextlib.aclosing(self._run(prompt, params)) as events:
            async for ev in events:
                if isinstance(ev, Finished):
                    finish, usage = (
                        ev.finish_reason,
                        Usage.of(ev.prompt_tokens, ev.completion_tokens),
                    )
                else:
                    parts.append(ev.text)
                    if ev.logprob:
                        lps.append(ev.logprob)
        text = "".join(parts)
        if params.json_schema is not None or params.json_object:
            _check_json(text, finish)
        return text, lps, finish, usage

    async def health(self) -> bool:
        return self._worker.is_alive() and not self._closed

    def _wake(self) -> None:
        """Run one turn of an idle scheduler loop (which waits for a job): a job cancelled
        before it is queued, which the loop drops. A full queue means the loop is busy and
        turns anyway."""
        job = Job(prompt=[], params=GenParams(max_tokens=0), emit=lambda _: None)
        job.cancelled.set()
        with contextlib.suppress(queue.Full):
            self._jobs.put_nowait(job)

    def load(self) -> dict[str, Any]:
        """Live worker state, for /health: is a job running, how many wait."""
        return {"busy": self._busy, "queued": self._jobs.qsize()}

    def describe(self) -> dict[str, Any]:
        return {"engine": type(self).__name__, "n_ctx": self.n_ctx, **self.load()}

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Queue slots may be full of waiting jobs; those clients are gone at shutdown anyway.
        with contextlib.suppress(queue.Full):
            self._jobs.put(None, timeout=5)
        await asyncio.to_thread(self._worker.join, 30)


async def _prepend(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    yield first
    async for item in rest:
        yield item


def _with_seed(params: GenParams, i: int) -> GenParams:
    if i == 0 or params.seed is None:
        return params
    from dataclasses import replace

    return replace(params, seed=params.seed + i)


def _completion_logprobs(lps: list[TokenLogprob]) -> CompletionLogprobs:
    out = CompletionLogprobs()
    offset = 0
    for lp in lps:
        out.tokens.append(lp.token)
        out.token_logprobs.append(lp.logprob)
        out.top_logprobs.append({t.token: t.logprob for t in lp.top_logprobs} or None)
        out.text_offset.append(offset)
        offset += len(lp.token)
    return out


def _check_json(text: str, finish: str) -> None:
    if finish == "length":
        return  # truncated by max_tokens, as OpenAI does: the client asked for it
    try:
        json.loads(text)
    except ValueError as exc:
        raise EngineError(f"the model produced invalid JSON despite the grammar: {exc}") from exc
