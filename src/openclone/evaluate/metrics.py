"""Reference metrics for answers that have a known good answer: ROUGE-L F and exact match.

ROUGE-L is Google's ``rouge_score`` (the implementation papers report), with its Porter
stemmer; it tokenises on a-z and 0-9 only, so text in other scripts scores 0. Exact match
compares after SQuAD's normalisation (lower case, no punctuation or English articles, single
spaces), so "The answer is 42." and "the answer is 42" match.
"""

from __future__ import annotations

import re
import string
from functools import lru_cache
from typing import Any

__all__ = ["exact_match", "normalize_answer", "reference_metrics", "rouge_l"]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


@lru_cache(maxsize=1)
def _scorer() -> Any:
    from rouge_score import rouge_scorer  # imports nltk's stemmer: load it only when used

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 of ``prediction`` against ``reference`` (0 when either has no tokens)."""
    return float(_scorer().score(reference, prediction)["rougeL"].fmeasure)


def normalize_answer(text: str) -> str:
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(reference))


def reference_metrics(prediction: str, reference: str) -> dict[str, float]:
    return {
        "rouge_l": rouge_l(prediction, reference),
        "exact_match": exact_match(prediction, reference),
    }
