"""Drift watch: replay pinned prompts against a model and compare with its first answers.

A closed API can change under you while its name stays the same; a pinned OpenClone version
does not. ``watch`` sends every prompt greedily (temperature 0, a fixed seed) and compares
the answers with a stored baseline, the first run's answers, written when the file does not
exist yet. The baseline pins the request settings too, so later runs replay exactly what it
recorded. Similarity is ROUGE-L F per prompt; the model has drifted when the mean drops
below ``threshold``. Each check is also appended to ``<baseline>.history.jsonl``, the record
that shows when answers changed.

Greedy decoding is not bit-exact everywhere (batching changes floating-point sums), so a
threshold a little below 1 tolerates the odd changed token; ``changed_share`` (answers not
identical) shows the strict picture.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openclone.errors import OpenCloneError
from openclone.evaluate.calls import ask
from openclone.evaluate.metrics import rouge_l
from openclone.evaluate.sets import EvalItem
from openclone.files import atomic_write
from openclone.schema import ChatMessage

if TYPE_CHECKING:
    from openclone.routing.client import ChatClient

__all__ = ["BaselineError", "DriftReport", "DriftRow", "watch"]


class BaselineError(OpenCloneError):
    """The baseline file is unreadable or was recorded for another model or prompt set."""


@dataclass
class DriftRow:
    prompt: str
    baseline: str | None  # None: a prompt added after the baseline, not compared
    answer: str
    similarity: float | None
    changed: bool


@dataclass
class DriftReport:
    model: str
    baseline_path: Path
    created_baseline: bool  # this run wrote the baseline: nothing to compare yet
    threshold: float
    n: int  # prompts compared
    mean_similarity: float | None
    changed_share: float | None
    drifted: bool
    checked_at: str
    rows: list[DriftRow] = field(default_factory=list)

    def to_dict(self, rows: bool = True) -> dict[str, Any]:
        out = asdict(self)
        out["baseline_path"] = str(self.baseline_path)
        if not rows:
            del out["rows"]
        return out


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _read_baseline(path: Path, model: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        answers = {a["prompt"]: a["answer"] for a in data["answers"]}
        settings = {k: data[k] for k in ("max_tokens", "seed", "temperature")}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BaselineError(f"{path}: not a drift baseline ({type(exc).__name__}: {exc})") from exc
    if data.get("model") != model:
        raise BaselineError(
            f"{path} was recorded for model {data.get('model')!r}, not {model!r}; "
            "pass another --baseline"
        )
    return {"answers": answers, **settings}


async def watch(
    client: ChatClient,
    model: str,
    prompts: Sequence[EvalItem | str],
    baseline_path: Path,
    threshold: float = 0.9,
    *,
    max_tokens: int = 256,
    seed: int = 0,
    concurrency: int = 4,
    retries: int = 4,
) -> DriftReport:
    """Replay ``prompts`` against ``model`` and compare with the baseline (see the module doc).

    ``max_tokens`` and ``seed`` apply when the baseline is created; later runs use the
    baseline's own.
    """
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    items = [
        p if isinstance(p, EvalItem) else EvalItem([ChatMessage(role="user", content=p)], p)
        for p in prompts
    ]
    baseline_path = Path(baseline_path)
    baseline = _read_baseline(baseline_path, model) if baseline_path.exists() else None
    if baseline is not None:
        max_tokens, seed = baseline["max_tokens"], baseline["seed"]
        if not any(item.prompt in baseline["answers"] for item in items):
            raise BaselineError(
                f"{baseline_path} has none of these {len(items)} prompts; "
                "it was recorded for another prompt set"
            )
    gate = asyncio.Semaphore(max(1, concurrency))

    async def answer(item: EvalItem) -> str:
        async with gate:
            got = await ask(
                client, model, item.messages, max_tokens=max_tokens, seed=seed, retries=retries
            )
            return got.text

    texts = await asyncio.gather(*(answer(item) for item in items))
    checked = _now()
    if baseline is None:
        record = {
            "model": model,
            "created": checked,
            "temperature": 0.0,
            "max_tokens": max_tokens,
            "seed": seed,
            "answers": [
                {"prompt": i.prompt, "answer": t} for i, t in zip(items, texts, strict=True)
            ],
        }
        atomic_write(baseline_path, json.dumps(record, indent=2, ensure_ascii=False) + "\n")
        rows = [DriftRow(i.prompt, t, t, 1.0, False) for i, t in zip(items, texts, strict=True)]
        report = DriftReport(
            model, baseline_path, True, threshold, len(rows), 1.0, 0.0, False, checked, rows
        )
    else:
        report = _compare(
            model, baseline_path, baseline["answers"], items, texts, threshold, checked
        )
    _append_history(report)
    return report


def _compare(
    model: str,
    path: Path,
    old: dict[str, str],
    items: list[EvalItem],
    texts: list[str],
    threshold: float,
    checked: str,
) -> DriftReport:
    rows = []
    for item, text in zip(items, texts, strict=True):
        before = old.get(item.prompt)
        if before is None:
            rows.append(DriftRow(item.prompt, None, text, None, False))
            continue
        # Two empty answers are the same answer, though ROUGE-L has no tokens to score.
        sim = 1.0 if before == text else rouge_l(text, before)
        rows.append(DriftRow(item.prompt, before, text, sim, before != text))
    compared = [r for r in rows if r.similarity is not None]
    mean = statistics.fmean(r.similarity for r in compared if r.similarity is not None)
    changed = sum(r.changed for r in compared) / len(compared)
    return DriftReport(
        model, path, False, threshold, len(compared), mean, changed, mean < threshold, checked, rows
    )


def _append_history(report: DriftReport) -> None:
    history = report.baseline_path.with_name(report.baseline_path.name + ".history.jsonl")
    with history.open("a", encoding="utf-8") as f:
        f.write(json.dumps(report.to_dict(rows=False), ensure_ascii=False) + "\n")
