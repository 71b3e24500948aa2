"""The dataset card: what made a dataset, what it cost, and what was thrown away and why.

Written beside the dataset as ``OUT.card.json`` (for tools) and ``OUT.card.md`` (for
people) at the end of every session, interrupted ones included.
"""

from __future__ import annotations

import json
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from openclone.distill.config import DistillConfig
from openclone.distill.output import DistillOutput
from openclone.files import file_sha256

__all__ = ["build_card", "card_paths", "render_markdown", "write_card"]


def card_paths(out: Path) -> tuple[Path, Path]:
    return out.with_suffix(".card.json"), out.with_suffix(".card.md")


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _openclone_version() -> str:
    try:
        return version("openclone")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def build_card(config: DistillConfig, output: DistillOutput) -> dict[str, Any]:
    state, account = output.state, output.state.account
    dropped = dict(sorted(state.dropped.items(), key=lambda kv: (-kv[1], kv[0])))
    counts: dict[str, Any] = {
        "kept": output.kept,
        "wanted": config.count,
        "dropped": dropped,
        "dropped_total": sum(dropped.values()),
    }
    if state.mode == "self-instruct":
        # Every task read out of a reply was kept, dropped for one reason, or not needed.
        counts |= {"tasks_written": state.written, "unused": state.unused}
    return {
        "dataset": output.path.name,
        "format": "openai-chat-jsonl",
        "rows": output.kept,
        "sha256": file_sha256(output.path),
        "mode": state.mode,
        "teacher": state.teacher,
        "source": state.source,
        "status": state.status,
        "counts": counts,
        "requests": {
            "task_writing": account.requests.get("tasks", 0),
            "answers": account.requests.get("answer", 0),
            "retries": account.retries,
            "failed": account.failed,
            "rejected": account.rejected,
        },
        "tokens": {
            "prompt": account.prompt_tokens,
            "completion": account.completion_tokens,
            "total": account.prompt_tokens + account.completion_tokens,
        },
        "cost_usd": round(account.cost_usd, 6),
        "prices_usd_per_million_tokens": {
            "input": config.price.input,
            "output": config.price.output,
        },
        "wall_seconds": round(output.elapsed(), 3),
        "sessions": state.sessions,
        "created": _iso(state.created),
        "updated": _iso(time.time()),
        "parameters": config.parameters(),
        "openclone_version": _openclone_version(),
    }


def render_markdown(card: dict[str, Any]) -> str:
    counts, requests, tokens = card["counts"], card["requests"], card["tokens"]
    lines = [
        f"# Dataset card: {card['dataset']}",
        "",
        f"OpenAI chat JSONL, **{card['rows']} rows**, made by `openclone distill` "
        f"({card['mode']}) with teacher **{card['teacher']}**.",
        "",
        "| | |",
        "| --- | --- |",
        f"| status | {card['status']} |",
        f"| source | {_source(card['source'])} |",
        f"| kept / wanted | {counts['kept']} / {counts['wanted']} |",
    ]
    if "tasks_written" in counts:
        lines.append(f"| tasks written by the teacher | {counts['tasks_written']} |")
        lines.append(f"| passed the filters but not needed | {counts['unused']} |")
    lines += [
        f"| dropped | {counts['dropped_total']} |",
        f"| requests (task writing / answers) | {requests['task_writing']} / "
        f"{requests['answers']} |",
        f"| retries / failed / rejected | {requests['retries']} / {requests['failed']} / "
        f"{requests['rejected']} |",
        f"| tokens (prompt + completion) | {tokens['prompt']} + {tokens['completion']} "
        f"= {tokens['total']} |",
        f"| cost | ${card['cost_usd']:.4f} |",
        f"| wall time | {card['wall_seconds']:.1f} s over {card['sessions']} session(s) |",
        f"| sha256 | `{card['sha256']}` |",
        f"| created / updated | {card['created']} / {card['updated']} |",
        "",
    ]
    if counts["dropped"]:
        lines += ["## Dropped, by reason", "", "| reason | rows |", "| --- | ---: |"]
        lines += [f"| {reason} | {n} |" for reason, n in counts["dropped"].items()]
        lines.append("")
    lines += ["## Parameters", "", "```json", json.dumps(card["parameters"], indent=2), "```", ""]
    return "\n".join(lines)


def _source(source: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in source.items()) or "-"


def write_card(config: DistillConfig, output: DistillOutput) -> tuple[Path, Path]:
    card = build_card(config, output)
    json_path, md_path = card_paths(output.path)
    json_path.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md_path.write_text(render_markdown(card), encoding="utf-8")
    return json_path, md_path
