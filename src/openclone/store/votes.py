"""Arena votes as battles for the ratings of :mod:`openclone.evaluate.arena`."""

from __future__ import annotations

from sqlalchemy import select

from openclone.evaluate.arena import Battle
from openclone.store.db import Store
from openclone.store.tables import Vote

__all__ = ["load_battles", "record_battle"]


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
