"""[[loops]] in openclone.toml: the issue's minimal form works as written; mistakes are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from loop.helpers import MINIMAL, write_config
from openclone.config import load_settings
from openclone.errors import ConfigError
from openclone.loop import get_loop, load_loops
from openclone.loop.config import parse_every


def test_the_minimal_loop_of_the_issue_reads_as_written(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path / "openclone.toml"))
    (loop,) = load_loops(settings)
    assert (loop.name, loop.model, loop.tenant, loop.teacher) == (
        "support", "support", "acme", "smollm2-135m-instruct"
    )  # fmt: skip
    assert (loop.budget.examples, loop.budget.train_steps, loop.budget.eval_prompts) == (8, 20, 6)
    assert loop.every_seconds == 86400
    assert loop.judge_model == "smollm2-135m-instruct"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('colour = "red"\n', "unknown key(s) colour"),
        ('every = "often"\n', 'expected a period such as "1d"'),
        ("holdout = 1.5\n", "holdout: in [0, 1)"),
        ("shadow_pairs = 5\nshadow_share = 0\n", "shadow_share: in (0, 1]"),
        ("min_shadow_win_rate = 0.5\n", "min_shadow_win_rate: needs shadow_pairs"),
        ("canary_share = 0.1\ncanary_policy = { max_errors = 1 }\n", "canary_policy: min_requests"),
        ("canary_share = 0.1\ncanary_pairs = 3\n", "canary_pairs: 0 (off) or at least 5"),
    ],
)
def test_a_mistake_in_a_loop_is_named(tmp_path: Path, extra: str, message: str) -> None:
    text = MINIMAL.replace('every = "1d"\n', "").replace("[loops.budget]", extra + "[loops.budget]")
    settings = load_settings(write_config(tmp_path / "openclone.toml", text))
    with pytest.raises(
        ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ):
        load_loops(settings)


def test_an_unknown_loop_lists_the_configured_ones(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path / "openclone.toml"))
    with pytest.raises(ConfigError, match=r"no loop named 'sales'.*loops: support"):
        get_loop(settings, "sales")


def test_cadences() -> None:
    assert [parse_every(t) for t in ("30s", "15m", "12h", "1d", "2w")] == [
        30,
        900,
        43200,
        86400,
        1209600,
    ]
