"""Captures out as training data: OpenAI chat fine-tuning JSONL, consented captures only.

Each row is ``{"messages": [...], "metadata": {"capture_id", "model", "created"}}`` (plus
``"tools"`` when the request offered tools): the request's messages and the answer. The
metadata lets an erasure find and remove the row later. Each export is recorded with its
file's sha256, its filters and the capture ids that went in (lineage), and audited.

What never gets in: a capture without consent (not a filter option — this feeds training),
a failed exchange (status other than 200), a legacy text completion, a capture without an
answer. Redaction: a tenant redacting at ``export`` gets redacted here; ``store`` tenants'
captures were redacted before they were written.

Encrypted exports (``encrypt=True``, ``openclone captures export --encrypt``): each row is
``{"sealed": ..., "metadata": {..., "tenant_id"}}``, its messages and tools sealed with the
tenant's data key and bound to the capture id. Erasure still rewrites such a file by the
capture ids in the clear; erasing a tenant leaves its rows in every copy unreadable;
:func:`decrypt_export` (``openclone captures decrypt``) gives back the plain file for
training, which reads plain JSONL.

Boilerplate: when at least ``BOILERPLATE_MIN_ROWS`` rows are exported and one system prompt
opens more than ``BOILERPLATE_SHARE`` of them, that system prompt is an application's
fixed preamble, not something to learn from, and is removed from every row that has it.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from openclone.errors import EncryptionError, InvalidRequestError
from openclone.files import file_sha256
from openclone.store.accounts import find_tenant
from openclone.store.audit import audit
from openclone.store.db import Store, open_private
from openclone.store.scrub import redact_exchange, resolve_redactor
from openclone.store.sealed import open_exchange, open_export_row, seal_export_row
from openclone.store.tables import Capture, Export, ExportItem, Feedback, Tenant, User

if TYPE_CHECKING:
    from openclone.store.scrub import RedactorLike

__all__ = [
    "BOILERPLATE_MIN_ROWS",
    "BOILERPLATE_SHARE",
    "CaptureFilter",
    "CaptureInfo",
    "DecryptResult",
    "ExportResult",
    "decrypt_export",
    "export_captures",
    "iter_captured_prompt_ids",
    "iter_captured_prompts",
    "list_captures",
    "search_captures",
]

BOILERPLATE_SHARE = 0.5
BOILERPLATE_MIN_ROWS = 10


@dataclass(frozen=True)
class CaptureFilter:
    """Which captures: all filters combine; times are epoch seconds, ``until`` exclusive."""

    tenant: str | None = None
    model: str | None = None
    since: float | None = None
    until: float | None = None
    feedback: str | None = None  # up|down: only answers rated so
    min_chars: int = 0  # the whole conversation, answer included

    def __post_init__(self) -> None:
        if self.feedback not in (None, "up", "down"):
            raise InvalidRequestError(
                f"the feedback filter is 'up' or 'down', not {self.feedback!r}", param="feedback"
            )
        if self.min_chars < 0:
            raise InvalidRequestError("min_chars must be 0 or more", param="min_chars")
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise InvalidRequestError("until must come after since", param="until")

    def query(self) -> Select[Capture, str]:
        # Consent is not an option here: only consented captures can reach training data.
        q = (
            select(Capture, Tenant.redact_mode)
            .join(Tenant, Capture.tenant_id == Tenant.id)
            .where(Capture.consent.is_(True), Capture.status == 200, Capture.endpoint == "chat")
            .order_by(Capture.created, Capture.id)
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
            rating = 1 if self.feedback == "up" else -1
            q = q.where(
                Capture.id.in_(select(Feedback.capture_id).where(Feedback.rating == rating))
            )
        return q

    def check(self, s: Session) -> None:
        if self.tenant and find_tenant(s, self.tenant) is None:
            raise InvalidRequestError(f"no tenant named {self.tenant!r}", param="tenant")


@dataclass(frozen=True)
class ExportResult:
    id: str
    path: Path
    rows: int
    sha256: str
    skipped: dict[str, int]  # reason -> rows (and boilerplate prompts removed)


def _chat(
    request: dict[str, Any], response: dict[str, Any] | None, mode: str, redactor: RedactorLike
) -> dict[str, Any] | None:
    if mode == "export":
        request, response, _ = redact_exchange(request, response, redactor)
    messages = [dict(m) for m in request.get("messages", []) if isinstance(m, dict)]
    choices = (response or {}).get("choices") or []
    message = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
    if not messages or not isinstance(message, dict):
        return None
    answer = {k: v for k, v in message.items() if v is not None}
    if not answer.get("content") and not answer.get("tool_calls"):
        return None
    row: dict[str, Any] = {"messages": [*messages, answer]}
    if isinstance(request.get("tools"), list) and request["tools"]:
        row["tools"] = request["tools"]
    return row


def _chars(messages: list[dict[str, Any]]) -> int:
    return sum(len(m["content"]) for m in messages if isinstance(m.get("content"), str))


def _system(row: dict[str, Any]) -> str | None:
    first = row["messages"][0]
    content = first.get("content")
    return content if first.get("role") == "system" and isinstance(content, str) else None


def export_captures(
    store: Store,
    out: Path,
    filters: CaptureFilter | None = None,
    *,
    actor: str = "cli",
    redactor: RedactorLike | str | None = None,
    encrypt: bool = False,
) -> ExportResult:
    """Write the consented captures matching ``filters`` to ``out`` and record the export;
    ``encrypt``: seal each row's text with its tenant's data key (see the module's doc)."""
    f = filters or CaptureFilter()
    red = resolve_redactor(redactor)
    if encrypt and not store.keyring.encrypt:
        raise InvalidRequestError(
            "an encrypted export needs encryption on: a master key (OPENCLONE_MASTER_KEY, "
            "master_key_file or kms)", param="encrypt",
        )  # fmt: skip
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    draft = out.with_name(out.name + ".draft")
    skipped: Counter[str] = Counter()
    systems: Counter[str] = Counter()
    ids: list[str] = []
    # Pass one streams the rows to a draft and counts system prompts; pass two removes the
    # boilerplate. Nothing but ids is held in memory, whatever the size of the store.
    with store.session() as s, open_private(draft) as fh:
        f.check(s)
        for cap, mode in s.execute(f.query().execution_options(yield_per=500)):
            row = _chat(*open_exchange(s, cap), mode, red)
            if row is None:
                skipped["no answer"] += 1
                continue
            if _chars(row["messages"]) < f.min_chars:
                skipped["too short"] += 1
                continue
            meta = {"capture_id": cap.id, "model": cap.model, "created": cap.created}
            if (system := _system(row)) is not None:
                systems[system] += 1
            ids.append(cap.id)
            if encrypt:
                meta["tenant_id"] = cap.tenant_id
                row = {"sealed": seal_export_row(s, cap.tenant_id, cap.id, row)}
            row["metadata"] = meta
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    boilerplate = {
        text for text, n in systems.items()
        if len(ids) >= BOILERPLATE_MIN_ROWS and n > BOILERPLATE_SHARE * len(ids)
    }  # fmt: skip
    final = out.with_name(out.name + ".tmp")
    with store.session() as s, draft.open(encoding="utf-8") as src, open_private(final) as dst:
        for line in src:
            if boilerplate:
                row = json.loads(line)
                content = _opened(s, row)
                if _system(content) in boilerplate:
                    content["messages"] = content["messages"][1:]
                    skipped["boilerplate system prompts removed"] += 1
                    line = json.dumps(_resealed(s, row, content), ensure_ascii=False) + "\n"
            dst.write(line)
    draft.unlink()
    os.replace(final, out)
    digest = file_sha256(out)
    with store.session() as s:
        export = Export(
            path=str(out), sha256=digest, hashes=[digest], rows=len(ids), actor=actor,
            filters={k: v for k, v in asdict(f).items() if v not in (None, 0)}
            | ({"encrypted": True} if encrypt else {}),
        )  # fmt: skip
        s.add(export)
        s.flush()
        s.add_all(ExportItem(export_id=export.id, capture_id=cid) for cid in ids)
        audit(s, actor, "export", export=export.id, path=str(out), rows=len(ids),
              sha256=digest, filters=export.filters)  # fmt: skip
        return ExportResult(export.id, out, len(ids), digest, dict(skipped))


def _opened(s: Session, row: dict[str, Any]) -> dict[str, Any]:
    """An export row's messages and tools, opened if it is sealed."""
    if "sealed" not in row:
        return row
    meta = row["metadata"]
    return open_export_row(s, meta["tenant_id"], meta["capture_id"], row["sealed"])


def _resealed(s: Session, row: dict[str, Any], content: dict[str, Any]) -> dict[str, Any]:
    if "sealed" not in row:
        return content
    meta = row["metadata"]
    return {"sealed": seal_export_row(s, meta["tenant_id"], meta["capture_id"], content),
            "metadata": meta}  # fmt: skip


@dataclass(frozen=True)
class DecryptResult:
    path: Path
    rows: int  # rows written, opened or plain
    unreadable: int  # sealed rows whose key is gone (tenant erased) or that do not open


def decrypt_export(store: Store, src: Path, out: Path) -> DecryptResult:
    """Write ``src`` (an export, encrypted or not) to ``out`` as plain training JSONL (0600).

    A row sealed for an erased tenant (its data key is gone) or that does not open is left
    out and counted: that is crypto-shredding reaching a copy of the file."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    rows = unreadable = 0
    with store.session() as s, Path(src).open(encoding="utf-8") as fh, open_private(tmp) as dst:
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            if "sealed" in row:
                try:
                    row = {**_opened(s, row), "metadata": row["metadata"]}
                except (EncryptionError, KeyError, TypeError, ValueError):
                    unreadable += 1
                    continue
                row["metadata"] = {k: v for k, v in row["metadata"].items() if k != "tenant_id"}
            dst.write(json.dumps(row, ensure_ascii=False) + "\n")
            rows += 1
    os.replace(tmp, out)
    return DecryptResult(out, rows, unreadable)


def iter_captured_prompts(
    store: Store,
    filters: CaptureFilter | None = None,
    *,
    redactor: RedactorLike | str | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """The consented prompts (the request's messages, without the answer), for distilling
    new answers from a teacher; same filters and redaction as :func:`export_captures`."""
    for _, messages in iter_captured_prompt_ids(store, filters, redactor=redactor):
        yield messages


def iter_captured_prompt_ids(
    store: Store,
    filters: CaptureFilter | None = None,
    *,
    redactor: RedactorLike | str | None = None,
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """:func:`iter_captured_prompts` with each prompt's capture id, which whatever is made
    from the prompt must carry so an erasure can find it (:mod:`openclone.store.derived`)."""
    f = filters or CaptureFilter()
    red = resolve_redactor(redactor)
    with store.session() as s:
        f.check(s)
        for cap, mode in s.execute(f.query().execution_options(yield_per=500)):
            request, _ = open_exchange(s, cap, response=False)
            if mode == "export":
                request, _, _ = redact_exchange(request, None, red)
            messages = [dict(m) for m in request.get("messages", []) if isinstance(m, dict)]
            if messages and _chars(messages) >= f.min_chars:
                yield cap.id, messages


@dataclass(frozen=True)
class CaptureInfo:
    id: str
    created: float
    tenant: str
    user: str | None
    model: str
    replica: str | None
    status: int
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: float
    consent: bool
    redactions: dict[str, int]


def _newest(s: Session, tenant: str | None) -> Select[Capture, str, str | None]:
    if tenant is not None and find_tenant(s, tenant) is None:
        raise InvalidRequestError(f"no tenant named {tenant!r}", param="tenant")
    q = (
        select(Capture, Tenant.name, User.name)
        .join(Tenant, Capture.tenant_id == Tenant.id)
        .outerjoin(User, Capture.user_id == User.id)
        .order_by(Capture.created.desc(), Capture.id.desc())
    )
    return q if tenant is None else q.where(Tenant.name == tenant)


def _info(c: Capture, tenant: str, user: str | None) -> CaptureInfo:
    return CaptureInfo(c.id, c.created, tenant, user, c.model, c.replica, c.status,
                       c.prompt_tokens, c.completion_tokens, c.latency_ms, c.consent,
                       dict(c.redactions or {}))  # fmt: skip


def list_captures(store: Store, tenant: str | None = None, limit: int = 20) -> list[CaptureInfo]:
    """The newest captures (their metadata, not their text)."""
    with store.session() as s:
        return [_info(c, t, u) for c, t, u in s.execute(_newest(s, tenant).limit(limit))]


def search_captures(
    store: Store, text: str, tenant: str | None = None, limit: int = 20
) -> list[CaptureInfo]:
    """The newest captures whose prompt or answer contains ``text``, ignoring case (their
    metadata, as :func:`list_captures` gives them: what to erase, say).

    Captured text may be sealed (encrypted at rest), so each capture is opened and searched
    here, newest first, until ``limit`` match: a scan of the store, not an index."""
    if not text.strip():
        raise InvalidRequestError("say what to search for", param="text")
    needle, found = text.lower(), []
    with store.session() as s:
        for c, t, u in s.execute(_newest(s, tenant).execution_options(yield_per=500)):
            request, response = open_exchange(s, c)
            if any(needle in part.lower() for part in _texts(request, response)):
                found.append(_info(c, t, u))
                if len(found) >= limit:
                    break
    return found


def _texts(request: dict[str, Any], response: dict[str, Any] | None) -> Iterator[str]:
    """The text a person or a model wrote in an exchange: messages, prompts, answers."""
    messages = [m for m in request.get("messages") or [] if isinstance(m, dict)]
    for key in ("prompt", "input"):  # a completion's prompt, an embeddings request's texts
        texts = request.get(key)
        for p in [texts] if isinstance(texts, str) else texts if isinstance(texts, list) else []:
            if isinstance(p, str):
                yield p
    for ch in (response or {}).get("choices") or []:
        if isinstance(ch, dict):
            if isinstance(ch.get("message"), dict):
                messages.append(ch["message"])
            if isinstance(ch.get("text"), str):
                yield ch["text"]
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            yield content
        elif isinstance(content, list):
            yield from (p["text"] for p in content if isinstance(p, dict)
                        and isinstance(p.get("text"), str))  # fmt: skip
