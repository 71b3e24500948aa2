"""Store commands: keys, tenants, erasure, retention, capture export, audit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from openclone.config import load_settings
from openclone.errors import OpenCloneError
from openclone.store import Store, open_store

__all__ = ["audit_app", "captures_app", "erase_command", "keys_app", "retention_app", "tenants_app"]

console = Console()
err = Console(stderr=True)
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="openclone.toml to read")]

keys_app = typer.Typer(help="API keys: create, list, revoke.", no_args_is_help=True)
tenants_app = typer.Typer(
    help="Tenants: consent default, redaction, retention.", no_args_is_help=True
)
captures_app = typer.Typer(help="Captured completions: list, export.", no_args_is_help=True)
retention_app = typer.Typer(
    help="Retention: erase captures past their tenant's limit.", no_args_is_help=True
)
audit_app = typer.Typer(help="The audit log of admin actions.", no_args_is_help=True)


@contextmanager
def _store(config: Path | None) -> Iterator[Store]:
    try:
        settings = load_settings(config)
        store = open_store(settings.database_url, settings.home)
    except OpenCloneError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    try:
        yield store
    except OpenCloneError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    finally:
        store.close()


def _when(t: float | None) -> str:
    return "" if t is None else dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")


def _day(value: str | None, flag: str) -> float | None:
    if value is None:
        return None
    try:
        return dt.datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise typer.BadParameter(
            f"expected a date like 2026-01-31, got {value!r}", param_hint=flag
        ) from None


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="tenant the key belongs to")],
    user: Annotated[
        str | None, typer.Option(help="the person; omit for a key serving many")
    ] = None,
    admin: Annotated[bool, typer.Option("--admin", help="an admin key")] = False,
    config: ConfigOpt = None,
) -> None:
    """Create a key; it is printed once, alone on the last line."""
    from openclone.store.keys import create_key

    with _store(config) as store:
        info, token = create_key(store, tenant, user, admin)
    err.print(
        f"key {info.id} ({info.scope}) for {tenant}{'/' + user if user else ''}; store it now, it is not shown again:"
    )
    print(token)


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option()] = None, config: ConfigOpt = None
) -> None:
    from openclone.store.keys import list_keys

    with _store(config) as store:
        keys = list_keys(store, tenant)
    table = Table("id", "prefix", "tenant", "user", "scope", "created", "revoked")
    for k in keys:
        table.add_row(
            k.id, k.prefix, k.tenant, k.user or "", k.scope, _when(k.created), _when(k.revoked)
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="key id or prefix")], config: ConfigOpt = None
) -> None:
    from openclone.store.keys import revoke_key

    with _store(config) as store:
        info = revoke_key(store, key)
    console.print(f"revoked key {info.id} ({info.prefix}…) of {info.tenant}")


@tenants_app.command("set")
def tenants_set(
    tenant: Annotated[str, typer.Argument()],
    consent: Annotated[str | None, typer.Option(help="on|off: default opt-in to training")] = None,
    redact: Annotated[
        str | None, typer.Option(help="store|export|off: when PII is redacted")
    ] = None,
    retention_days: Annotated[
        int | None, typer.Option(help="erase captures older than this")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    from openclone.store.accounts import set_tenant_policy

    if consent not in (None, "on", "off"):
        raise typer.BadParameter("on or off", param_hint="--consent")
    with _store(config) as store:
        t = set_tenant_policy(
            store, tenant, actor="cli", consent=None if consent is None else consent == "on",
            redact=redact, retention_days=retention_days,
        )  # fmt: skip
    console.print(
        f"{t.name}: consent {'on' if t.consent_default else 'off'}, redact {t.redact_mode}, "
        f"retention {t.retention_days or 'none'}"
    )


def erase_command(
    user: Annotated[str | None, typer.Option(help="a person (with --tenant)")] = None,
    tenant: Annotated[str | None, typer.Option(help="a tenant, or the person's tenant")] = None,
    conversation: Annotated[str | None, typer.Option(help="one conversation")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
    config: ConfigOpt = None,
) -> None:
    """Erase a person, a conversation or a tenant — for real, and recorded."""
    from openclone.store.privacy import erase

    what = (
        f"conversation {conversation}"
        if conversation
        else (f"user {user} of {tenant}" if user else f"tenant {tenant}")
    )
    if not (user or tenant or conversation):
        err.print(
            "[red]error:[/red] say what to erase: --user U --tenant T, --conversation ID or --tenant T"
        )
        raise typer.Exit(2)
    if not yes and not typer.confirm(f"Erase everything of {what}? This cannot be undone"):
        raise typer.Exit(1)
    with _store(config) as store:
        result = erase(store, actor="cli", tenant=tenant, user=user, conversation=conversation)
    counts = ", ".join(f"{v} {k}" for k, v in result.counts.items())
    console.print(f"erased {what}: {counts} (erasure {result.id})")
    if result.exports:
        console.print(
            f"rewrote {len(result.exports)} export(s) that held the data: {', '.join(result.exports)}"
        )


@captures_app.command("export")
def captures_export(
    out: Annotated[Path, typer.Option(help="OpenAI chat fine-tuning JSONL to write")],
    tenant: Annotated[str | None, typer.Option()] = None,
    model: Annotated[str | None, typer.Option()] = None,
    since: Annotated[str | None, typer.Option(help="from this date (ISO)")] = None,
    until: Annotated[str | None, typer.Option(help="before this date (ISO)")] = None,
    feedback: Annotated[str | None, typer.Option(help="up|down: only rated answers")] = None,
    min_chars: Annotated[int, typer.Option(help="skip shorter conversations")] = 0,
    config: ConfigOpt = None,
) -> None:
    """Export consented captures as training data (consent is not optional)."""
    from openclone.store.export import CaptureFilter, export_captures

    f = CaptureFilter(
        tenant, model, _day(since, "--since"), _day(until, "--until"), feedback, min_chars
    )
    with _store(config) as store:
        result = export_captures(store, out, f, actor="cli")
    skipped = ", ".join(f"{v} {k}" for k, v in result.skipped.items()) or "none"
    console.print(
        f"wrote {result.rows} rows to {out} (sha256 {result.sha256[:16]}…, export {result.id}); skipped: {skipped}"
    )


@captures_app.command("list")
def captures_list(
    tenant: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option()] = 20,
    config: ConfigOpt = None,
) -> None:
    from sqlalchemy import select

    from openclone.store.tables import Capture, Tenant, User

    with _store(config) as store, store.session() as s:
        q = (
            select(Capture, Tenant.name, User.name)
            .join(Tenant, Capture.tenant_id == Tenant.id)
            .outerjoin(User, Capture.user_id == User.id)
            .order_by(Capture.created.desc())
            .limit(limit)
        )
        if tenant:
            q = q.where(Tenant.name == tenant)
        table = Table("id", "time", "tenant", "user", "model", "status", "tokens", "ms", "consent")
        for c, t, u in s.execute(q):
            tokens = f"{c.prompt_tokens or 0}+{c.completion_tokens or 0}"
            table.add_row(c.id[:12], _when(c.created), t, u or "", c.model, str(c.status), tokens,
                          f"{c.latency_ms:.0f}", "yes" if c.consent else "no")  # fmt: skip
    console.print(table)


@retention_app.command("apply")
def retention_apply(config: ConfigOpt = None) -> None:
    from openclone.store.privacy import apply_retention

    with _store(config) as store:
        results = apply_retention(store, actor="cli")
    for r in results:
        console.print(f"{r.target}: erased {r.counts.get('captures', 0)} captures")
    if not results:
        console.print("nothing past its retention")


@audit_app.command("list")
def audit_list(limit: Annotated[int, typer.Option()] = 50, config: ConfigOpt = None) -> None:
    from openclone.store.audit import list_audit

    with _store(config) as store:
        entries = list_audit(store, limit)
    table = Table("time", "actor", "action", "detail")
    for e in entries:
        table.add_row(
            _when(e.created), e.actor, e.action, ", ".join(f"{k}={v}" for k, v in e.detail.items())
        )
    console.print(table)
