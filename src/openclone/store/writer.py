"""The capture writer: the gateway's sink, committing captures in batches off the request path.

``submit`` is a ``put_nowait`` on a bounded queue — it never blocks a request; a full queue
drops the capture and counts it. One thread drains the queue and commits each batch in one
transaction, so an exchange acknowledged to the client is durable once its batch commits
(tens of milliseconds later) and a clean ``close()`` flushes everything queued.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from openclone.gateway.capture import Exchange
from openclone.store.accounts import effective_consent, tenant_by_name, user_by_name
from openclone.store.conversations import append_exchange
from openclone.store.db import Store
from openclone.store.redact import Redactor, load_redactor, redact_messages
from openclone.store.tables import Capture

__all__ = ["CaptureWriter"]

log = logging.getLogger("openclone.capture")
_STOP = object()


class CaptureWriter:
    def __init__(
        self,
        store: Store,
        max_queue: int = 10_000,
        batch_size: int = 256,
        flush_interval: float = 0.05,
        redactor: Redactor | str | None = None,
    ) -> None:
        self.store = store
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.redactor = load_redactor(redactor) if not callable(redactor) else redactor
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self._idle = threading.Condition()
        self._pending = 0
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def submit(self, exchange: Exchange) -> None:
        with self._idle:
            self._pending += 1
        try:
            self._queue.put_nowait(exchange)
        except queue.Full:
            self.dropped += 1
            self._done(1)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything submitted so far is committed (or dropped as failed)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self) -> None:
        self.flush()
        self._queue.put(_STOP)
        self._thread.join(timeout=30)

    def _done(self, n: int) -> None:
        with self._idle:
            self._pending -= n
            if not self._pending:
                self._idle.notify_all()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch = [item]
            deadline = time.monotonic() + self.flush_interval
            stop = False
            while len(batch) < self.batch_size:
                try:
                    more = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                batch.append(more)
            self._write(batch)
            self._done(len(batch))
            if stop:
                return

    def _write(self, batch: list[Exchange]) -> None:
        try:
            with self.store.session() as s:
                for ex in batch:
                    self._add(s, ex)
            self.written += len(batch)
            return
        except Exception:
            log.exception("capture batch of %d failed; retrying one by one", len(batch))
        for ex in batch:  # one bad exchange must not lose the others
            try:
                with self.store.session() as s:
                    self._add(s, ex)
                self.written += 1
            except Exception:
                self.failed += 1
                log.exception("capture %s not recorded", ex.id)

    def _add(self, s: Any, ex: Exchange) -> None:
        tenant = tenant_by_name(s, ex.tenant or "default")
        assert tenant is not None
        user = user_by_name(s, tenant, ex.user) if ex.user else None
        request = dict(ex.request)
        response = dict(ex.response) if ex.response is not None else None
        counts: dict[str, int] = {}
        if tenant.redact_mode == "store":
            request, response, counts = redact_exchange(request, response, self.redactor)
        s.add(
            Capture(
                id=ex.id,
                tenant_id=tenant.id,
                user_id=user.id if user else None,
                key_id=ex.key_id,
                conversation_id=ex.conversation,
                endpoint=ex.endpoint,
                model=ex.model,
                replica=ex.replica,
                request=request,
                response=response,
                status=ex.status,
                stream=ex.stream,
                prompt_tokens=ex.usage.prompt_tokens if ex.usage else None,
                completion_tokens=ex.usage.completion_tokens if ex.usage else None,
                latency_ms=ex.latency_ms,
                consent=effective_consent(tenant, user, ex.train),
                redactions=counts,
                created=ex.created,
            )
        )
        if ex.conversation and ex.endpoint == "chat" and ex.status == 200:
            append_exchange(s, tenant, user, ex.conversation, ex.id, request, response, ex.model)


def redact_exchange(
    request: dict[str, Any], response: dict[str, Any] | None, redactor: Redactor
) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, int]]:
    """Redacted copies of a captured request and response, and what was redacted."""
    counts: dict[str, int] = {}

    def add(more: dict[str, int]) -> None:
        for k, v in more.items():
            counts[k] = counts.get(k, 0) + v

    request = dict(request)
    if isinstance(request.get("messages"), list):
        request["messages"], c = redact_messages(request["messages"], redactor)
        add(c)
    if isinstance(request.get("prompt"), str):
        r = redactor(request["prompt"])
        request["prompt"] = r.text
        add(r.counts)
    if response is not None and isinstance(response.get("choices"), list):
        response = dict(response)
        choices = []
        for ch in response["choices"]:
            ch = dict(ch)
            if isinstance(ch.get("message"), dict):
                [ch["message"]], c = redact_messages([ch["message"]], redactor)
                add(c)
            if isinstance(ch.get("text"), str):
                r = redactor(ch["text"])
                ch["text"] = r.text
                add(r.counts)
            choices.append(ch)
        response["choices"] = choices
    return request, response, counts
