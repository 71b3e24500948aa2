"""The promotion gate: what evidence a candidate needs before it takes live traffic.

A candidate is refused when its judged win rate against the current champion is
significantly below 50% (the 95% interval lies wholly below it), or when its win rate
against the teacher is below ``(1 - teacher_margin) * 50%`` — "within 5% of the teacher"
means a win rate of at least 47.5% against it. The first champion of a name needs no
evidence; every later promotion needs an evaluation against the champion, unless forced.

Live traffic adds two checks when its evidence is given: a shadow's win rate against the
incumbent on real requests (``vs_live``) must not be significantly below 50% and, with
``min_live_win_rate``, must reach it (a rule that asks for it refuses a candidate that has
no such evidence); a canary that the gateways (or a loop's judge) rolled back, or a person
stopped, is refused, and so is one whose own requests, judged against the incumbent's
answers to them (``quality``, at least ``MIN_CANARY_PAIRS``), put it significantly below 50%.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["MIN_CANARY_PAIRS", "GateResult", "check"]

MIN_CANARY_PAIRS = 5  # judged canary pairs before their win rate counts as evidence


@dataclass(frozen=True)
class GateResult:
    ok: bool
    reasons: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    return {
        k: report.get(k) for k in ("candidate", "reference", "win_rate", "ci_low", "ci_high", "n")
    }


def check(
    has_champion: bool,
    vs_champion: dict[str, Any] | None,
    vs_teacher: dict[str, Any] | None,
    teacher_margin: float = 0.05,
    *,
    vs_live: dict[str, Any] | None = None,
    min_live_win_rate: float | None = None,
    canary: dict[str, Any] | None = None,
) -> GateResult:
    reasons: list[str] = []
    evidence: dict[str, Any] = {}
    if vs_champion is not None:
        evidence["vs_champion"] = _summary(vs_champion)
        high = vs_champion.get("ci_high")
        if high is None or not isinstance(high, (int, float)):
            reasons.append("the champion report has no confidence interval (ci_high)")
        elif high < 0.5:
            reasons.append(
                f"win rate against the champion is significantly below 50% "
                f"({vs_champion.get('win_rate'):.1%}, 95% CI up to {high:.1%})"
            )
    elif has_champion:
        reasons.append("no evaluation against the current champion (run `openclone eval`)")
    if vs_teacher is not None:
        evidence["vs_teacher"] = _summary(vs_teacher)
        need = 0.5 * (1 - teacher_margin)
        rate = vs_teacher.get("win_rate")
        if not isinstance(rate, (int, float)) or rate < need:
            reasons.append(
                f"win rate against the teacher {rate!r} is below {need:.1%} "
                f"(within {teacher_margin:.0%} of the teacher)"
            )
    reasons += _live(has_champion, vs_live, min_live_win_rate, canary, evidence)
    return GateResult(not reasons, reasons, evidence)


def _live(
    has_champion: bool,
    vs_live: dict[str, Any] | None,
    least: float | None,
    canary: dict[str, Any] | None,
    evidence: dict[str, Any],
) -> list[str]:
    reasons = []
    if vs_live is not None:
        evidence["vs_live"] = _summary(vs_live)
        rate, high = vs_live.get("win_rate"), vs_live.get("ci_high")
        if isinstance(high, int | float) and high < 0.5:
            reasons.append(
                f"on live traffic (shadow) the win rate against the incumbent is significantly "
                f"below 50% ({rate:.1%}, 95% CI up to {high:.1%})"
            )
        elif least is not None and (not isinstance(rate, int | float) or rate < least):
            reasons.append(f"live-traffic win rate {rate!r} is below the required {least:.0%}")
    elif least is not None and has_champion:
        reasons.append(f"no live-traffic (shadow) win rate; the rule requires {least:.0%}")
    if canary is not None:
        evidence["canary"] = canary
        state = canary.get("state")
        if state in ("rolled_back", "stopped"):
            said = str(state).replace("_", " ")
            reasons.append(f"the canary was {said}: {canary.get('reason') or '?'}")
        else:
            quality = canary.get("quality") or {}
            rate, high, n = quality.get("win_rate"), quality.get("ci_high"), quality.get("n")
            enough = isinstance(n, int) and n >= MIN_CANARY_PAIRS
            if enough and isinstance(high, int | float) and high < 0.5:
                reasons.append(
                    f"on the canary's own requests the win rate against the incumbent is "
                    f"significantly below 50% ({rate:.1%}, 95% CI up to {high:.1%}, n={n})"
                )
    return reasons
