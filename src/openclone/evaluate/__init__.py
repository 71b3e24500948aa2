"""Evaluation: pairwise judging, win rates with confidence intervals, arena ratings, drift.

=============  ===============================================================
``runner``     ``evaluate_pair``: candidate vs reference, judged twice per pair
``judge``      the judge prompt, the verdict parser, the swap rule
``stats``      win rate, bootstrap CI, length control, Bradley-Terry fit
``metrics``    ROUGE-L and exact match against reference answers
``sets``       the bundled set, eval files, held-out splits (``split_rows``)
``report``     JSON, Markdown and self-contained HTML reports
``arena``      battles and the leaderboard (human votes and judge verdicts)
``drift``      replay pinned prompts and compare with a baseline
=============  ===============================================================
"""

from openclone.config import Price  # the one price type, here for eval's callers
from openclone.evaluate.arena import Battle, Rating, bradley_terry, leaderboard, read_battles
from openclone.evaluate.drift import BaselineError, DriftReport, watch
from openclone.evaluate.judge import parse_verdict
from openclone.evaluate.report import write_reports
from openclone.evaluate.results import Answer, EvalReport, EvalRow
from openclone.evaluate.runner import EvalConfig, battles_of, evaluate_pair, run_eval
from openclone.evaluate.sets import EvalItem, PromptSet, held_out_set, load_prompt_set, split_rows

__all__ = [
    "Answer",
    "BaselineError",
    "Battle",
    "DriftReport",
    "EvalConfig",
    "EvalItem",
    "EvalReport",
    "EvalRow",
    "Price",
    "PromptSet",
    "Rating",
    "battles_of",
    "bradley_terry",
    "evaluate_pair",
    "held_out_set",
    "leaderboard",
    "load_prompt_set",
    "parse_verdict",
    "read_battles",
    "run_eval",
    "split_rows",
    "watch",
    "write_reports",
]
