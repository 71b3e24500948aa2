"""An evaluation written three ways: JSON for tools, Markdown for a pull request, HTML to read.

The HTML page is self-contained (inline CSS and SVG, no script, no external resource), so
it can be mailed or archived as one file. Every string that came from a model, a prompt
set or a user is escaped: a model answering ``<script>`` shows the text, never runs it.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from openclone.evaluate.results import EvalReport, EvalRow, ModelSummary

__all__ = ["render_html", "render_markdown", "write_reports"]


def write_reports(report: EvalReport, out: Path) -> dict[str, Path]:
    """Write report.json, report.md and report.html into ``out``; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "report.json",
        "markdown": out / "report.md",
        "html": out / "report.html",
    }
    paths["json"].write_text(
        json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    paths["markdown"].write_text(render_markdown(report), encoding="utf-8")
    paths["html"].write_text(render_html(report), encoding="utf-8")
    return paths


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def _num(x: float | None, fmt: str = ".2f") -> str:
    return "n/a" if x is None else format(x, fmt)


def _outcome(row: EvalRow) -> str:
    if row.error:
        return "error"
    if row.score is None:
        return "missing"
    return {1.0: "win", 0.5: "tie", 0.0: "loss"}.get(row.score, "missing")


def _summary_rows(report: EvalReport) -> list[tuple[str, ModelSummary]]:
    # Labelled by role: a model evaluated against itself appears under one name twice.
    return [
        (f"candidate: {report.candidate}", report.summary["candidate"]),
        (f"reference: {report.reference}", report.summary["reference"]),
    ]


# ---- Markdown --------------------------------------------------------------------------


def _md(text: str | None, limit: int = 160) -> str:
    text = " ".join((text or "").split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return html.escape(text, quote=False).replace("|", "\\|")


def render_markdown(report: EvalReport) -> str:
    r = report
    lines = [
        f"# {_md(r.candidate)} vs {_md(r.reference)}",
        "",
        f"Judge `{_md(r.judge)}`, prompt set `{_md(r.prompt_set)}`, {r.created}.",
        "",
        "| win rate | 95% CI | length-controlled | n | wins | ties | losses | unparsed | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {_pct(r.win_rate)} | {_pct(r.ci_low)} - {_pct(r.ci_high)} | {_pct(r.lc_win_rate)} "
        f"| {r.n} | {r.wins} | {r.ties} | {r.losses} | {r.unparsed} | {r.errors} |",
        "",
        "| model | answers | latency mean (s) | p95 (s) | tokens/answer | cost/answer ($) | chars | ROUGE-L | exact match |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, s in _summary_rows(r):
        lines.append(
            f"| {_md(name)} | {s.answers} | {_num(s.latency_mean_s)} | {_num(s.latency_p95_s)} "
            f"| {_num(s.completion_tokens_mean, '.0f')} | {_num(s.cost_per_answer, '.6f')} "
            f"| {_num(s.length_mean, '.0f')} | {_num(s.metrics.get('rouge_l'), '.3f')} "
            f"| {_num(s.metrics.get('exact_match'), '.3f')} |"
        )
    lines += [
        "",
        "## Prompts",
        "",
        "| # | category | prompt | candidate | reference | verdicts | outcome |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in r.rows:
        verdicts = " / ".join(v or "?" for v in row.verdicts) or "-"
        lines.append(
            f"| {row.index + 1} | {_md(row.category)} | {_md(row.prompt, 80)} "
            f"| {_md(row.candidate.text if row.candidate else row.error)} "
            f"| {_md(row.reference.text if row.reference else '')} | {verdicts} | {_outcome(row)} |"
        )
    return "\n".join(lines) + "\n"


# ---- HTML ------------------------------------------------------------------------------

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1200px;padding:0 1rem;color:#1d2430;background:#fff}
h1{font-size:1.5rem;margin:0 0 .25rem}h2{font-size:1.15rem;margin:2rem 0 .5rem}
.meta{color:#5b6575;margin:0 0 1.25rem}
.cards{display:flex;flex-wrap:wrap;gap:.75rem;margin:1rem 0}
.card{border:1px solid #dde2ea;border-radius:8px;padding:.6rem .9rem;min-width:8rem}
.card b{display:block;font-size:1.35rem}.card span{color:#5b6575;font-size:.85rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #e6e9ef;padding:.4rem .5rem;text-align:left;vertical-align:top}
th{background:#f5f7fa;position:sticky;top:0}
td.text{white-space:pre-wrap;word-break:break-word;max-width:28rem}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.win{color:#1a7f37}.loss{color:#c62828}.tie,.missing{color:#5b6575}.error{color:#b26a00}
details summary{cursor:pointer;color:#5b6575}
"""

_COLORS = {"wins": "#2e9d4f", "ties": "#a9b1bd", "losses": "#d64545"}


def _chart(r: EvalReport) -> str:
    """Wins/ties/losses as one stacked bar, and the win rate with its CI on a 0-100% axis."""
    width, left = 700, 24
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width + 2 * left}" height="150" '
        'role="img" aria-label="wins, ties and losses; win rate with 95% CI">'
    ]
    x = float(left)
    total = max(1, r.n)
    for key, count in (("wins", r.wins), ("ties", r.ties), ("losses", r.losses)):
        w = width * count / total
        if w > 0:
            parts.append(
                f'<rect x="{x:.1f}" y="10" width="{w:.1f}" height="34" fill="{_COLORS[key]}"/>'
            )
            if w > 60:
                parts.append(
                    f'<text x="{x + w / 2:.1f}" y="32" text-anchor="middle" fill="#fff" '
                    f'font-size="13">{key} {count}</text>'
                )
        x += w
    if r.n == 0:
        parts.append(f'<rect x="{left}" y="10" width="{width}" height="34" fill="#eef0f4"/>')

    def at(v: float) -> float:
        return left + width * v

    axis_y = 100
    parts.append(
        f'<line x1="{left}" y1="{axis_y}" x2="{left + width}" y2="{axis_y}" stroke="#5b6575"/>'
    )
    for tick in (0, 0.25, 0.5, 0.75, 1):
        parts.append(
            f'<line x1="{at(tick):.1f}" y1="{axis_y}" x2="{at(tick):.1f}" y2="{axis_y + 5}" stroke="#5b6575"/>'
            f'<text x="{at(tick):.1f}" y="{axis_y + 20}" text-anchor="middle" font-size="12" '
            f'fill="#5b6575">{tick:.0%}</text>'
        )
    parts.append(
        f'<line x1="{at(0.5):.1f}" y1="60" x2="{at(0.5):.1f}" y2="{axis_y}" stroke="#8a94a3" '
        'stroke-dasharray="4 3"/>'
    )
    if r.win_rate is not None and r.ci_low is not None and r.ci_high is not None:
        y = 80
        parts.append(
            f'<line x1="{at(r.ci_low):.1f}" y1="{y}" x2="{at(r.ci_high):.1f}" y2="{y}" '
            'stroke="#1d2430" stroke-width="2"/>'
        )
        for end in (r.ci_low, r.ci_high):
            parts.append(
                f'<line x1="{at(end):.1f}" y1="{y - 6}" x2="{at(end):.1f}" y2="{y + 6}" '
                'stroke="#1d2430" stroke-width="2"/>'
            )
        parts.append(f'<circle cx="{at(r.win_rate):.1f}" cy="{y}" r="5" fill="#2456c4"/>')
        parts.append(
            f'<text x="{at(r.win_rate):.1f}" y="{y - 10}" text-anchor="middle" font-size="12">'
            f"win rate {r.win_rate:.1%} (95% CI {r.ci_low:.1%} - {r.ci_high:.1%})</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _e(text: object) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def _card(value: str, label: str) -> str:
    return f'<div class="card"><b>{_e(value)}</b><span>{_e(label)}</span></div>'


def _prompt_row(row: EvalRow) -> str:
    cand, ref = row.candidate, row.reference
    verdicts = " / ".join(v or "unparsed" for v in row.verdicts) or "-"
    replies = "".join(
        f"<details><summary>judge, candidate as {side}</summary>{_e(text)}</details>"
        for side, text in zip(("A", "B"), row.judge_replies, strict=False)
    )
    metrics = "; ".join(
        f"{side}: " + ", ".join(f"{k} {v:.2f}" for k, v in m.items())
        for side, m in row.metrics.items()
    )
    outcome = _outcome(row)
    return (
        "<tr>"
        f'<td class="num">{row.index + 1}</td><td>{_e(row.category)}</td>'
        f'<td class="text">{_e(row.prompt)}'
        + (
            f"<details><summary>reference answer</summary>{_e(row.expected)}</details>"
            if row.expected
            else ""
        )
        + "</td>"
        f'<td class="text">{_e(cand.text if cand else row.error)}</td>'
        f'<td class="text">{_e(ref.text if ref else "")}</td>'
        f'<td class="{outcome}">{_e(outcome)}<br><small>{_e(verdicts)}</small>{replies}</td>'
        f'<td class="num">{cand.length if cand else ""}<br>{ref.length if ref else ""}</td>'
        f'<td class="num">{_num(cand.latency_s if cand else None)}<br>{_num(ref.latency_s if ref else None)}</td>'
        f"<td>{_e(metrics)}</td>"
        "</tr>"
    )


def render_html(report: EvalReport) -> str:
    r = report
    ci = f"{_pct(r.ci_low)} - {_pct(r.ci_high)}"
    cards = "".join(
        [
            _card(_pct(r.win_rate), "win rate (ties half)"),
            _card(ci, "95% bootstrap CI"),
            _card(_pct(r.lc_win_rate), "length-controlled"),
            _card(f"{r.wins} / {r.ties} / {r.losses}", "wins / ties / losses"),
            _card(str(r.n), "judged prompts"),
            _card(str(r.unparsed), "unparsed verdicts"),
            _card(str(r.errors), "errors"),
        ]
    )
    models = "".join(
        f"<tr><td>{_e(name)}</td><td class='num'>{s.answers}</td>"
        f"<td class='num'>{_num(s.latency_mean_s)}</td><td class='num'>{_num(s.latency_p95_s)}</td>"
        f"<td class='num'>{_num(s.completion_tokens_mean, '.0f')}</td>"
        f"<td class='num'>{_num(s.cost_per_answer, '.6f')}</td><td class='num'>{_num(s.cost_total, '.4f')}</td>"
        f"<td class='num'>{_num(s.length_mean, '.0f')}</td>"
        f"<td class='num'>{_num(s.metrics.get('rouge_l'), '.3f')}</td>"
        f"<td class='num'>{_num(s.metrics.get('exact_match'), '.3f')}</td></tr>"
        for name, s in _summary_rows(r)
    )
    rows = "".join(_prompt_row(row) for row in r.rows)
    title = f"{r.candidate} vs {r.reference}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)} - OpenClone eval</title><style>{_CSS}</style></head>
<body>
<h1>{_e(title)}</h1>
<p class="meta">judge {_e(r.judge)} · prompt set {_e(r.prompt_set)} · {_e(r.created)} ·
temperature {_e(r.settings.get("temperature"))}, max tokens {_e(r.settings.get("max_tokens"))}</p>
<div class="cards">{cards}</div>
{_chart(r)}
<h2>Models</h2>
<table><thead><tr><th>model</th><th>answers</th><th>latency mean (s)</th><th>p95 (s)</th>
<th>tokens/answer</th><th>cost/answer ($)</th><th>cost ($)</th><th>chars</th><th>ROUGE-L</th>
<th>exact match</th></tr></thead><tbody>{models}</tbody></table>
<p class="meta">judge cost ${r.judge_cost:.4f}</p>
<h2>Prompts</h2>
<table><thead><tr><th>#</th><th>category</th><th>prompt</th><th>candidate: {_e(r.candidate)}</th>
<th>reference: {_e(r.reference)}</th><th>outcome</th><th>chars</th><th>latency (s)</th><th>metrics</th></tr></thead>
<tbody>{rows}</tbody></table>
</body></html>
"""
