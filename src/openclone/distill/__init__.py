"""Distillation: a teacher model's answers turned into training data.

Two ways in, one output (OpenAI chat JSONL plus a dataset card):

* :func:`distill_self_instruct`: the Self-Instruct / Alpaca loop from seed tasks;
* :func:`distill_prompts`: the teacher re-answers given prompts, such as the company's own
  consented captures (:func:`captured_prompts`) or a chat JSONL file (:func:`read_prompts`).

Both take a :class:`DistillConfig` and any :class:`~openclone.routing.client.ChatClient`, and
continue an interrupted run on the same output instead of starting over.
"""

from openclone.config import Price  # the one price type, here for distill's callers
from openclone.distill.captures import captured_prompts, distill_prompts, read_prompts
from openclone.distill.config import DistillConfig, DistillError, RetryPolicy
from openclone.distill.filters import Reason
from openclone.distill.parse import parse_tasks
from openclone.distill.run import DistillResult, ProgressEvent
from openclone.distill.seeds import SeedSet, load_seeds
from openclone.distill.selfinstruct import distill_self_instruct
from openclone.distill.task import Task
from openclone.distill.teacher import (
    Account,
    Teacher,
    TeacherFailed,
    TeacherRejected,
    TeacherUnavailable,
)

__all__ = [
    "Account",
    "DistillConfig",
    "DistillError",
    "DistillResult",
    "Price",
    "ProgressEvent",
    "Reason",
    "RetryPolicy",
    "SeedSet",
    "Task",
    "Teacher",
    "TeacherFailed",
    "TeacherRejected",
    "TeacherUnavailable",
    "captured_prompts",
    "distill_prompts",
    "distill_self_instruct",
    "load_seeds",
    "parse_tasks",
    "read_prompts",
]
