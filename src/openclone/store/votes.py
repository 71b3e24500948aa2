"""Arena votes: a :class:`Battle` is two models, one prompt and a verdict, kept in the store.

The ratings over them are :mod:`openclone.evaluate.arena`'s: evaluation reads the store,
never the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from openclone.store.db import Store
from openclone.store.tables import Vote

__all__ = ["SOURCES", "WINNERS", "Battle", "load_battles", "record_battle"]

WINNERS = ("a", "b", "tie", "both_bad")
SOURCES = ("human", "judge")


@dataclass(frozen=True)
class Battle:
    model_a: str
    model_b: str
    winner: str  # a | b | tie | both_bad
    source: str = "human"  # human | judge

    def __post_init__(self) -> None:
        if self.winner not in WINNERS:
            raise ValueError(f"winner must be one of {', '.join(WINNERS)}, got {self.winner!r}")
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if self.model_a == self.model_b:
            raise ValueError(f"a battle needs two different models, got {self.model_a!r} twice")


def load_battles(store: Store) -> list[Battle]:
    with store.session() as s:
        rows = s.scalars(select(Vote).order_by(Vote.created))
        return [Battle(v.model_a, v.model_b, v.winner, v.source) for v in rows]


def record_battle(store: Store, battle: Battle) -> None:
    with store.session() as s:
        s.add(
            Vote(model_a=battle.model_a, model_b=battle.model_b, winner=battle.winner,
                 source=battle.source)
        )  # fmt: skip
