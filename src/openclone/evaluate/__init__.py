"""Evaluation: pairwise judging, win rates with confidence intervals, arena ratings."""
