"""Store commands: keys, tenants, erasure, retention, capture export and list, audit.

Each command opens the store named by the settings (``--config``, ``OPENCLONE_*``), calls
one library function and prints its result; a mistake (an unknown key, tenant, filter)
is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Column, Table

from openclone.cli.common import FAILED, USAGE, ConfigOpt, console, err, fail, opened_store

if TYPE_CHECKING:
    from openclone.store.export import CaptureInfo
    from openclone.store.ratelimits import Limits

__all__ = [
    "audit_app",
    "captures_app",
    "erase_command",
    "keys_app",
    "retention_app",
    "tenants_app",
]

keys_app = typer.Typer(help="API keys: create, list, revoke, rate limits.", no_args_is_help=True)
tenants_app = typer.Typer(
    help="Tenants: consent default, redaction, retention, rate limits.", no_args_is_help=True
)
captures_app = typer.Typer(help="Captured completions: list, export.", no_args_is_help=True)
retention_app = typer.Typer(
    help="Retention: erase captures past their tenant's limit.", no_args_is_help=True
)
audit_app = typer.Typer(help="The audit log of admin actions, and erasures.", no_args_is_help=True)


def _when(t: float | None) -> str:
    return "" if t is None else dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")


def _date(value: str | None, flag: str) -> float | None:
    if value is None:
        return None
    try:
        return dt.datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise typer.BadParameter(
            f"expected a date like 2026-01-31 (or 2026-01-31T08:00), got {value!r}",
            param_hint=flag,
        ) from None


# Rate limits, the same flags on `tenants set` and `keys set`; 0 removes a limit.
RpmOpt = Annotated[int | None, typer.Option(min=0, help="requests per minute (0: no limit)")]
TpmOpt = Annotated[int | None, typer.Option(min=0, help="tokens per minute (0: no limit)")]
StreamsOpt = Annotated[
    int | None, typer.Option(min=0, help="concurrent streams per gateway (0: no limit)")
]
MonthlyOpt = Annotated[
    int | None, typer.Option(min=0, help="tokens per calendar month, UTC (0: no limit)")
]


def _limit_values(
    rpm: int | None, tpm: int | None, max_streams: int | None, monthly_tokens: int | None
) -> dict[str, int | None]:
    given = {"rpm": rpm, "tpm": tpm, "max_streams": max_streams, "monthly_tokens": monthly_tokens}
    return {k: v for k, v in given.items() if v is not None}


def _show_limits(limits: Limits) -> str:
    shown = [f"{k.replace('_', ' ')} {v}" for k, v in limits.as_dict().items() if v is not None]
    return ", ".join(shown) or "none"


def _choice(value: str | None, allowed: tuple[str, ...], flag: str) -> str | None:
    if value is not None and value not in allowed:
        raise typer.BadParameter(f"one of {', '.join(allowed)}, not {value!r}", param_hint=flag)
    return value


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="tenant the key belongs to (created if new)")],
    user: Annotated[
        str | None, typer.Option(help="the person; omit for a key serving many")
    ] = None,
    admin: Annotated[bool, typer.Option("--admin", help="an admin key")] = False,
    config: ConfigOpt = None,
) -> None:
    """Create a key; it is printed once, alone on the last line of the output."""
    from openclone.store.keys import create_key

    with opened_store(config) as store:
        info, token = create_key(store, tenant, user, admin)
    who = f"{tenant}/{user}" if user else tenant
    err.print(f"key {info.id} ({info.scope}) for {who}; store it now, it is not shown again:")
    print(token)


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="only this tenant's keys")] = None,
    config: ConfigOpt = None,
) -> None:
    """Every key, revoked ones too (the plaintext is never shown again)."""
    from openclone.store.keys import list_keys

    with opened_store(config) as store:
        keys = list_keys(store, tenant)
    table = Table("tenant", "user", "scope", "created", "last used", "revoked")
    # The prefix (unique, what `keys revoke` takes) must survive a narrow terminal whole.
    table.columns.insert(0, Column("key", no_wrap=True))
    for k in keys:
        table.add_row(k.prefix, k.tenant, k.user or "", k.scope, _when(k.created),
                      _when(k.last_used), _when(k.revoked))  # fmt: skip
    console.print(table if keys else "no keys")


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="key id or the prefix shown in `keys list`")],
    config: ConfigOpt = None,
) -> None:
    """Revoke a key; gateways stop accepting it within seconds."""
    from openclone.store.keys import revoke_key

    with opened_store(config) as store:
        info = revoke_key(store, key)
    console.print(f"revoked key {info.id} ({info.prefix}…) of {info.tenant}")


@tenants_app.command("set")
def tenants_set(
    tenant: Annotated[str, typer.Argument(help="tenant name (created if new)")],
    consent: Annotated[
        str | None, typer.Option(help="on|off: the default opt-in to training")
    ] = None,
    redact: Annotated[
        str | None, typer.Option(help="store|export|off: when PII is redacted")
    ] = None,
    retention_days: Annotated[
        int | None, typer.Option(help="erase captures older than this many days")
    ] = None,
    no_retention: Annotated[bool, typer.Option("--no-retention", help="keep forever")] = False,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    max_streams: StreamsOpt = None,
    monthly_tokens: MonthlyOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Set a tenant's consent default, redaction, retention and rate limits (audited);
    running gateways apply new limits within about a second."""
    from openclone.store.accounts import REDACT_MODES, set_tenant_policy
    from openclone.store.ratelimits import get_limits, set_limits

    _choice(consent, ("on", "off"), "--consent")
    _choice(redact, REDACT_MODES, "--redact")
    values = _limit_values(rpm, tpm, max_streams, monthly_tokens)
    policy = consent is not None or redact is not None or retention_days is not None
    with opened_store(config) as store:
        if values:
            set_limits(store, tenant=tenant, values=values, actor="cli")
        if policy or no_retention or not values:
            set_tenant_policy(
                store, tenant, actor="cli", consent=None if consent is None else consent == "on",
                redact=redact, retention_days=retention_days, clear_retention=no_retention,
            )  # fmt: skip
        limits = get_limits(store, tenant=tenant)
    _print_tenant(tenant, config, limits)


def _print_tenant(tenant: str, config: Path | None, limits: Limits) -> None:
    from openclone.store.accounts import get_tenant

    with opened_store(config) as store:
        t = get_tenant(store, tenant)
    console.print(
        f"{t.name}: consent {'on' if t.consent_default else 'off'}, redact {t.redact_mode}, "
        f"retention {f'{t.retention_days} days' if t.retention_days else 'none'}"
    )
    console.print(f"limits: {_show_limits(limits)}", soft_wrap=True)


@tenants_app.command("show")
def tenants_show(
    tenant: Annotated[str, typer.Argument(help="tenant name")],
    config: ConfigOpt = None,
) -> None:
    """A tenant's policy, rate limits, the tokens it used this month (as synced by the
    gateways, about once a second) and what it holds."""
    from openclone.store.admin import tenant_detail

    with opened_store(config) as store:
        t = tenant_detail(store, tenant)
    _print_tenant(tenant, config, t.limits)
    quota = f" of {t.limits.monthly_tokens}" if t.limits.monthly_tokens is not None else ""
    console.print(f"tokens used this month: {t.tokens_this_month}{quota}")
    console.print(f"{t.users} users, {t.keys} live keys ({t.revoked_keys} revoked), "
                  f"{t.captures} captures, {t.conversations} conversations, "
                  f"{t.responses} stored responses")  # fmt: skip


@keys_app.command("set")
def keys_set(
    key: Annotated[str, typer.Argument(help="key id or the prefix shown in `keys list`")],
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    max_streams: StreamsOpt = None,
    monthly_tokens: MonthlyOpt = None,
    scope: Annotated[
        str | None, typer.Option(help="admin|user: make it an admin key or not")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Set a key's own rate limits (audited); its tenant's limits bind it as well."""
    from openclone.store.keys import set_key_scope
    from openclone.store.ratelimits import get_limits, set_limits

    _choice(scope, ("admin", "user"), "--scope")
    values = _limit_values(rpm, tpm, max_streams, monthly_tokens)
    with opened_store(config) as store:
        if scope is not None:
            info = set_key_scope(store, key, scope == "admin", actor="cli")
            console.print(f"key {info.prefix} of {info.tenant}: scope {info.scope}")
        if values:
            limits = set_limits(store, key=key, values=values, actor="cli")
        else:
            limits = get_limits(store, key=key)
    console.print(f"key {key}: limits: {_show_limits(limits)}", soft_wrap=True)


@tenants_app.command("list")
def tenants_list(config: ConfigOpt = None) -> None:
    """Tenants and their policies."""
    from openclone.store.accounts import list_tenants

    with opened_store(config) as store:
        tenants = list_tenants(store)
    table = Table("tenant", "consent", "redact", "retention", "users", "live keys", "created")
    for t in tenants:
        table.add_row(t.name, "on" if t.consent_default else "off", t.redact_mode,
                      f"{t.retention_days} days" if t.retention_days else "none",
                      str(t.users), str(t.keys), _when(t.created))  # fmt: skip
    console.print(table if tenants else "no tenants")


def erase_command(
    user: Annotated[str | None, typer.Option(help="a person (with --tenant)")] = None,
    tenant: Annotated[str | None, typer.Option(help="a tenant, or the person's tenant")] = None,
    conversation: Annotated[str | None, typer.Option(help="one conversation")] = None,
    capture: Annotated[
        str | None, typer.Option(help="one capture (and the answer it gave)")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
    config: ConfigOpt = None,
) -> None:
    """Erase a person, a conversation, a capture or a tenant — for real, and recorded."""
    from openclone.store.privacy import erase

    if not (user or tenant or conversation or capture):
        raise fail("say what to erase: --user U --tenant T, --conversation ID, --capture ID "
                   "or --tenant T", USAGE)  # fmt: skip
    if user and not tenant:
        raise fail("--user needs the person's --tenant", USAGE)
    if capture:
        what = f"capture {capture}"
    elif conversation:
        what = f"conversation {conversation}"
    else:
        what = f"user {user} of tenant {tenant}" if user else f"tenant {tenant} (everything in it)"
    if not yes and not typer.confirm(f"Erase {what}? This cannot be undone", err=True):
        err.print("nothing erased")
        raise typer.Exit(FAILED)
    with opened_store(config) as store:
        result = erase(store, actor="cli", tenant=tenant, user=user, conversation=conversation,
                       capture=capture)  # fmt: skip
    counts = ", ".join(f"{v} {k}" for k, v in result.counts.items() if v) or "nothing stored"
    console.print(f"erased {what}: {counts} (erasure {result.id})")
    if not result.compacted:
        err.print("[yellow]warning:[/yellow] the database could not be compacted afterwards "
                  "(see the log); deleted bytes may linger until it is")  # fmt: skip
    if result.exports:
        console.print(
            f"rewrote the {len(result.exports)} export(s) and distilled dataset(s) that held "
            f"it: {', '.join(result.exports)}"
            "; `openclone audit erasures` lists them and the models trained on them"
        )


@captures_app.command("export")
def captures_export(
    out: Annotated[Path, typer.Option(help="OpenAI chat fine-tuning JSONL to write")],
    tenant: Annotated[str | None, typer.Option()] = None,
    model: Annotated[str | None, typer.Option()] = None,
    since: Annotated[str | None, typer.Option(help="from this date (ISO)")] = None,
    until: Annotated[str | None, typer.Option(help="before this date (ISO)")] = None,
    feedback: Annotated[str | None, typer.Option(help="up|down: only answers rated so")] = None,
    min_chars: Annotated[int, typer.Option(help="skip shorter conversations")] = 0,
    encrypt: Annotated[
        bool,
        typer.Option(
            "--encrypt", help="seal each row with its tenant's key (`captures decrypt` opens it)"
        ),
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Export consented captures as training data (consent is not optional)."""
    from openclone.store.export import CaptureFilter, export_captures

    _choice(feedback, ("up", "down"), "--feedback")
    with opened_store(config) as store:
        f = CaptureFilter(
            tenant, model, _date(since, "--since"), _date(until, "--until"), feedback, min_chars
        )
        result = export_captures(store, out, f, actor="cli", encrypt=encrypt)
    skipped = ", ".join(f"{v} {k}" for k, v in result.skipped.items()) or "none"
    console.print(f"wrote {result.rows} rows to {result.path}", highlight=False)
    console.print(f"sha256 {result.sha256}, export {result.id}; skipped: {skipped}")


@captures_app.command("list")
def captures_list(
    tenant: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1)] = 20,
    config: ConfigOpt = None,
) -> None:
    """The newest captures: who, which model, how it went (not their text)."""
    from openclone.store.export import list_captures

    with opened_store(config) as store:
        rows = list_captures(store, tenant, limit)
    _print_captures(rows)


@captures_app.command("search")
def captures_search(
    text: Annotated[str, typer.Argument(help="text to find in prompts and answers (any case)")],
    tenant: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1)] = 20,
    config: ConfigOpt = None,
) -> None:
    """The newest captures whose prompt or answer contains TEXT (shown as `list` shows
    them, not their text): e.g. what to erase. Encrypted captures are opened to search."""
    from openclone.store.export import search_captures

    with opened_store(config) as store:
        rows = search_captures(store, text, tenant, limit)
    _print_captures(rows)


def _print_captures(rows: list[CaptureInfo]) -> None:
    table = Table("id", "time", "tenant", "user", "model", "status", "tokens", "ms", "consent",
                  "redacted")  # fmt: skip
    for c in rows:
        tokens = f"{c.prompt_tokens or 0}+{c.completion_tokens or 0}"
        redacted = ", ".join(f"{n} {k}" for k, n in c.redactions.items())
        table.add_row(c.id[:12], _when(c.created), c.tenant, c.user or "", c.model, str(c.status),
                      tokens, f"{c.latency_ms:.0f}", "yes" if c.consent else "no", redacted)  # fmt: skip
    console.print(table if rows else "no captures")


@retention_app.command("apply")
def retention_apply(config: ConfigOpt = None) -> None:
    """Erase what is past each tenant's retention now (`openclone serve` also applies it
    every `retention_interval` seconds)."""
    from openclone.store.privacy import run_retention

    with opened_store(config) as store:
        results = run_retention(store, actor="cli")
    for r in results:
        console.print(
            f"{r.target}: erased {r.counts.get('captures', 0)} captures and "
            f"{r.counts.get('conversations', 0)} conversations (erasure {r.id})"
        )
    if not results:
        console.print("nothing past its retention")


@audit_app.command("list")
def audit_list(
    limit: Annotated[int, typer.Option(min=1)] = 50,
    action: Annotated[str | None, typer.Option(help="e.g. key, erase, export")] = None,
    actor: Annotated[str | None, typer.Option(help="e.g. cli, key:ID, retention")] = None,
    config: ConfigOpt = None,
) -> None:
    """Admin actions, newest first."""
    from openclone.store.audit import list_audit

    with opened_store(config) as store:
        entries = list_audit(store, limit, action=action, actor=actor)
    table = Table("time", "actor", "action", "detail")
    for e in entries:
        detail = ", ".join(f"{k}={v}" for k, v in e.detail.items())
        table.add_row(_when(e.created), e.actor, e.action, detail)
    console.print(table if entries else "the audit log is empty")


@audit_app.command("erasures")
def audit_erasures(
    since: Annotated[str | None, typer.Option(help="from this date (ISO)")] = None,
    config: ConfigOpt = None,
) -> None:
    """Erasures, the exports and distilled datasets that held erased data, and the models
    and training runs trained on those."""
    from openclone.config import load_settings
    from openclone.store.lineage import (
        affected_exports,
        affected_models,
        affected_runs,
        erasures_since,
    )
    from openclone.store.taint import list_taints, taint_lines

    start = _date(since, "--since")
    with opened_store(config) as store:
        records = erasures_since(store, start)
        exports = affected_exports(store, start)
        models = affected_models(store, start)
        runs = affected_runs(store, start, load_settings(config).home)
        taints = list_taints(store)
    table = Table("time", "actor", "kind", "target", "erased", "exports")
    for e in records:
        erased = ", ".join(f"{v} {k}" for k, v in e.counts.items() if v)
        table.add_row(_when(e.created), e.actor, e.kind, e.target, erased, str(len(e.exports)))
    console.print(table if records else "no erasures")
    for x in exports:
        state = "rewritten" if x.on_disk else "not on disk: find and delete its copies"
        what = {"distill": "distilled dataset", "loop": "loop file"}.get(x.kind, "export")
        console.print(f"{what} {x.id} {x.path} ({state}); held sha256 {', '.join(x.held)}",
                      highlight=False, soft_wrap=True)  # fmt: skip
    for m in models:
        console.print(f"model {m.name}@{m.version} was trained on {m.dataset_sha256}: retrain it")
    for r in runs:
        console.print(f"trained run {r.name} ({r.served_as}) was trained on {r.dataset} "
                      f"(sha256 {r.dataset_sha256}): retrain it", highlight=False,
                      soft_wrap=True)  # fmt: skip
    for line in taint_lines(taints):
        console.print(line, highlight=False, soft_wrap=True)
