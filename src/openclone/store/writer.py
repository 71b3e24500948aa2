"""The capture writer: the gateway's sink, committing captures in batches off the request path.

``submit`` is a ``put_nowait`` on a bounded queue — it never blocks a request; a full queue
drops the capture and counts it. One thread drains the queue and commits each batch (up to
``batch_size`` exchanges, or what arrived within ``flush_interval``) in one transaction, so
an exchange is durable once its batch commits, tens of milliseconds after the answer, and
``close()`` commits everything queued before it returns.

For each exchange the writer resolves consent (the person's own choice, which a request
header may only narrow > the header > the tenant's default), redacts when the tenant
redacts at store time, and, when the exchange names a conversation, appends the turns and
the answer to it — only to the key owner's own conversation (a shared key naming a person
in ``user`` still writes to the tenant's conversations, never to that person's) — and, when
the store has a master key, seals the text with the tenant's data key (store/sealed.py).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from openclone.store.accounts import (
    TENANT_NAME_MAX,
    USER_NAME_MAX,
    effective_consent,
    ensure_tenant,
    ensure_user,
)
from openclone.store.conversations import append_exchange, claim_conversation
from openclone.store.db import Store
from openclone.store.exchange import Exchange
from openclone.store.scrub import clean_json, clean_text, redact_exchange, resolve_redactor
from openclone.store.sealed import seal_exchange
from openclone.store.stored_completions import stored_row
from openclone.store.tables import Capture, StoredCompletion, Tenant, User
from openclone.store.tombstones import ErasedTarget

if TYPE_CHECKING:
    from openclone.store.scrub import RedactorLike

__all__ = ["CaptureWriter"]

log = logging.getLogger("openclone.capture")
_STOP = object()  # close(): write what is queued, then end
_FLUSH = object()  # flush(): commit the batch being gathered now
_RETRIES = (0.1, 0.5, 2.0)  # seconds between attempts while the database is unreachable


class CaptureWriter:
    """A :class:`~openclone.gateway.capture.CaptureSink` writing to ``store``.

    Counters, for ``/metrics``: ``written`` (committed), ``dropped`` (queue full, or
    submitted after ``close``), ``failed`` (could not be stored; logged), ``queued`` (now
    waiting), ``batches`` (transactions committed).
    """

    def __init__(
        self,
        store: Store,
        max_queue: int = 10_000,
        batch_size: int = 256,
        flush_interval: float = 0.05,
        redactor: RedactorLike | str | None = None,
    ) -> None:
        self.store = store
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.redactor = resolve_redactor(redactor)  # a bad setting fails at startup
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self.batches = 0
        self._idle = threading.Condition()
        self._pending = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def submit(self, exchange: Exchange) -> None:
        """Queue ``exchange``; returns at once, whatever happens."""
        with self._idle:
            if self._closed:
                self.dropped += 1
                return
            self._pending += 1
        try:
            self._queue.put_nowait(exchange)
        except queue.Full:
            with self._idle:
                self.dropped += 1
            self._done(1)

    def write_now(self, batch: list[Exchange]) -> int:
        """Commit ``batch`` in the caller's thread, past the queue; returns how many could not
        be stored (logged). For exchanges that must be readable when the caller goes on: a
        completion the client asked to keep (``store: true``), an import. Blocks: call it
        from a worker thread, never on the event loop."""
        return self._write(batch)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything submitted so far is committed (or given up as failed)."""
        # End the batch being gathered now, not at its interval; a full queue makes full
        # batches, which commit at once anyway.
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_FLUSH)
        return self._wait(timeout)

    def close(self, timeout: float = 60.0) -> None:
        """Commit everything queued, then stop the thread. Later submits are dropped."""
        with self._idle:
            if self._closed:
                return
            self._closed = True
        self._queue.put(_STOP)  # behind everything already queued, so all of it is written
        if not self._wait(timeout):
            log.error("capture writer closed with %d captures still unwritten", self._pending)
        self._thread.join(timeout=timeout)

    def _wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

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
            if item is _FLUSH:
                continue
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
                if more is _FLUSH:
                    break
                batch.append(more)
            try:
                self._write(batch)
            except Exception:  # the thread must outlive anything a batch can do
                self.failed += len(batch)
                log.exception("capture batch of %d lost", len(batch))
            self._done(len(batch))
            if stop:
                return

    def _write(self, batch: list[Exchange]) -> int:
        for pause in (*_RETRIES, None):
            try:
                self._commit(batch)
                return 0
            except OperationalError:
                # The database is down or locked: every exchange would fail alike, so wait
                # for it rather than give up on the batch.
                if pause is None:
                    log.exception("database unavailable; retrying captures one by one")
                    break
                log.warning("database unavailable; retrying %d captures in %.1fs",
                            len(batch), pause)  # fmt: skip
                time.sleep(pause)
            except ErasedTarget:  # a late capture among them: the others still go in
                break
            except Exception:
                log.exception("capture batch of %d failed; retrying one by one", len(batch))
                break
        failed = 0
        for ex in batch:  # one bad exchange must not lose the others
            try:
                self._commit([ex])
            except ErasedTarget:  # queued before its tenant or person was erased: it stays so
                self.dropped += 1
            except Exception:
                failed += 1
                self.failed += 1
                log.exception("capture %s not recorded", getattr(ex, "id", "?"))
        return failed

    def _commit(self, batch: list[Exchange]) -> None:
        with self.store.session() as s:
            rows = _Rows(s)
            captures = []
            for ex in batch:
                captures.append(self._row(s, rows, ex))
                time.sleep(0)  # let a waiting request thread have the GIL between rows
            s.flush()  # tenants, users and conversations first: captures refer to them
            # One executemany of plain rows on the table, past the ORM: ORM objects cost more
            # than the redaction and the SQL together, and its bulk layer another 10%.
            s.connection().execute(insert(Capture.metadata.tables[Capture.__tablename__]), captures)
            kept = [
                stored_row(ex, row) for ex, row in zip(batch, captures, strict=True) if ex.store
            ]
            if kept:  # completions the client asked to keep, beside their captures
                s.connection().execute(insert(StoredCompletion), kept)
        self.written += len(batch)
        self.batches += 1

    def _row(self, s: Session, rows: _Rows, ex: Exchange) -> dict[str, Any]:
        """The capture's row; its tenant, user and conversation turns are added to ``s``."""
        tenant = rows.tenant(ex.tenant or "default", ex.created)
        user = rows.user(tenant, ex.user, ex.created) if ex.user and ex.user.strip() else None
        request, response = clean_json(ex.request), clean_json(ex.response)
        counts: dict[str, int] = {}
        if tenant.redact_mode == "store":
            request, response, counts = redact_exchange(request, response, self.redactor)
        conversation = None
        if ex.conversation:
            answered = ex.endpoint == "chat" and ex.status == 200
            owner = user if ex.user_from_key else None
            conversation = claim_conversation(s, tenant, owner, ex.conversation, create=answered)
            if conversation is not None and answered:
                append_exchange(s, conversation, ex.id, request, response, ex.model)
        # Encrypted here, in the writer's thread, never on the request's path.
        request, response = seal_exchange(s, tenant.id, ex.id, request, response)
        return {
            "id": ex.id,
            "tenant_id": tenant.id,
            "user_id": user.id if user else None,
            "key_id": ex.key_id,
            "conversation_id": conversation.id if conversation else None,
            "endpoint": ex.endpoint[:16],
            "model": ex.model[:256],
            "replica": ex.replica[:256] if ex.replica else None,
            "request": request,
            "response": response,
            "status": ex.status,
            "stream": ex.stream,
            "prompt_tokens": ex.usage.prompt_tokens if ex.usage else None,
            "completion_tokens": ex.usage.completion_tokens if ex.usage else None,
            "latency_ms": ex.latency_ms,
            "consent": effective_consent(tenant, user, ex.train),
            "redactions": counts,
            "created": ex.created,
        }


class _Rows:
    """Tenants and users looked up once per batch, not once per exchange."""

    def __init__(self, s: Session) -> None:
        self.s = s
        self._tenants: dict[str, Tenant] = {}
        self._users: dict[tuple[str, str], User] = {}

    def tenant(self, name: str, started: float | None = None) -> Tenant:
        name = clean_text(name)[:TENANT_NAME_MAX]  # a name is no reason to lose a capture
        if name not in self._tenants:  # a capture older than its tenant's erasure is refused
            self._tenants[name] = ensure_tenant(self.s, name, started=started)
        return self._tenants[name]

    def user(self, tenant: Tenant, name: str, started: float | None = None) -> User:
        name = clean_text(name)[:USER_NAME_MAX]
        key = (tenant.id, name)
        if key not in self._users:  # a capture older than its person's erasure is refused
            self._users[key] = ensure_user(self.s, tenant, name, started=started)
        return self._users[key]
