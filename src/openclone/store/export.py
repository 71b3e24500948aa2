"""Captures out as training data: OpenAI chat fine-tuning JSONL, consented captures only.

Each row is ``{"messages": [...], "metadata": {"capture_id", "model", "created"}}``; the
metadata lets an erasure find and remove the row later. Each export is recorded with its
file's sha256 and the capture ids that went in (lineage).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Select, select

from openclone.errors import InvalidRequestError
from openclone.store.audit import audit
from openclone.store.db import Store
from openclone.store.redact import Redactor, load_redactor
from openclone.store.tables import Capture, Export, ExportItem, Feedback, Tenant
from openclone.store.writer import redact_exchange

__all__ = ["CaptureFilter", "ExportResult", "export_captures", "iter_captured_prompts"]

BOILERPLATE_SHARE = 0.5  # a system prompt on more than half the rows is boilerplate…
BOILERPLATE_MIN_ROWS = 10  # …once there are enough rows to tell


@dataclass(frozen=True)
class CaptureFilter:
    tenant: str | None = None
    model: str | None = None
    since: float | None = None
    until: float | None = None
    feedback: str | None = None  # up|down
    min_chars: int = 0

    def query(self) -> Select[Capture, str]:
        # Consent is not a filter option: only consented captures can reach training data.
        q = (
            select(Capture, Tenant.redact_mode)
            .join(Tenant, Capture.tenant_id == Tenant.id)
            .where(Capture.consent.is_(True), Capture.status == 200, Capture.endpoint == "chat")
            .order_by(Capture.created)
        )
        if self.tenant:
            q = q.where(Tenant.name == self.tenant)
        if self.model:
            q = q.where(Capture.model == self.model)
        if self.since is not None:
            q = q.where(Capture.created >= self.since)
        if self.until is not None:
            q = q.where(Capture.created < self.until)
        if self.feedback is not None:
            if self.feedback not in ("up", "down"):
                raise InvalidRequestError("feedback filter must be 'up' or 'down'")
            rating = 1 if self.feedback == "up" else -1
            q = q.where(
                Capture.id.in_(select(Feedback.capture_id).where(Feedback.rating == rating))
            )
        return q


@dataclass(frozen=True)
class ExportResult:
    id: str
    path: Path
    rows: int
    sha256: str
    skipped: dict[str, int]


def _conversation(cap: Capture, mode: str, redactor: Redactor) -> list[dict[str, Any]] | None:
    request, response = cap.request, cap.response
    if mode == "export":
        request, response, _ = redact_exchange(request, response, redactor)
    messages = [dict(m) for m in request.get("messages", []) if isinstance(m, dict)]
    choices = (response or {}).get("choices") or []
    if not messages or not choices or not isinstance(choices[0].get("message"), dict):
        return None
    answer = {k: v for k, v in choices[0]["message"].items() if v is not None}
    return [*messages, answer]


def _chars(messages: list[dict[str, Any]]) -> int:
    return sum(len(m["content"]) for m in messages if isinstance(m.get("content"), str))


def export_captures(
    store: Store,
    out: Path,
    filters: CaptureFilter | None = None,
    *,
    actor: str = "cli",
    redactor: Redactor | str | None = None,
) -> ExportResult:
    f = filters or CaptureFilter()
    red = redactor if callable(redactor) else load_redactor(redactor)
    rows: list[tuple[Capture, list[dict[str, Any]]]] = []
    skipped: Counter[str] = Counter()
    with store.session() as s:
        for cap, mode in s.execute(f.query()):
            conv = _conversation(cap, mode, red)
            if conv is None:
                skipped["no answer"] += 1
            elif _chars(conv) < f.min_chars:
                skipped["too short"] += 1
            else:
                rows.append((cap, conv))
    systems = Counter(
        m["content"] for _, conv in rows for m in conv[:1] if m.get("role") == "system"
    )
    boiler = {
        text for text, n in systems.items()
        if len(rows) >= BOILERPLATE_MIN_ROWS and n > BOILERPLATE_SHARE * len(rows)
    }  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for cap, conv in rows:
            if conv[0].get("role") == "system" and conv[0].get("content") in boiler:
                conv = conv[1:]
                skipped["boilerplate system prompts removed"] += 1
            meta = {"capture_id": cap.id, "model": cap.model, "created": cap.created}
            fh.write(json.dumps({"messages": conv, "metadata": meta}, ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    with store.session() as s:
        export = Export(
            path=str(out.resolve()), sha256=digest, rows=len(rows),
            filters={k: v for k, v in f.__dict__.items() if v not in (None, 0)}, actor=actor,
        )  # fmt: skip
        s.add(export)
        s.flush()
        s.add_all(ExportItem(export_id=export.id, capture_id=cap.id) for cap, _ in rows)
        audit(s, actor, "export", export=export.id, rows=len(rows), sha256=digest)
        return ExportResult(export.id, out, len(rows), digest, dict(skipped))


def iter_captured_prompts(
    store: Store, filters: CaptureFilter | None = None
) -> Iterator[list[dict[str, Any]]]:
    """The consented prompts (messages without the answer), for distillation."""
    f = filters or CaptureFilter()
    red = load_redactor(None)
    with store.session() as s:
        for cap, mode in s.execute(f.query()):
            request = cap.request
            if mode == "export":
                request, _, _ = redact_exchange(request, None, red)
            messages = [dict(m) for m in request.get("messages", []) if isinstance(m, dict)]
            if messages and _chars(messages) >= f.min_chars:
                yield messages
