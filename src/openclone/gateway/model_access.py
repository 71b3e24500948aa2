"""Which tenant may use which model: a fine-tuned model is its tenant's.

A fine-tuning job names its model at creation (``ft:BASE:ORG:SUFFIX:ID`` and its run's
registry name); those names, their pinned versions (``NAME@N``) and the adapter they serve
(``BASE:RUN``) are listed and served only to that tenant and to admin keys. Another tenant
is told the model does not exist, in the words of any unknown model, so it cannot learn that
the name is taken. Every other model — the catalog's, and models the operator trained and
registered with the CLI — is everyone's.

The owners map is read from the store when first needed and again by the jobs follower
every few seconds; a job's names are owned from the job's creation, minutes before its
model can be served, so a gateway sharing the database knows them in time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from openclone.errors import ModelNotFound
from openclone.model_names import parse_model_name
from openclone.store.accounts import Principal
from openclone.store.db import Store

__all__ = ["ModelOwners"]


class ModelOwners:
    def __init__(self) -> None:
        self._owners: dict[str, str] | None = None  # None: not read from the store yet

    async def refresh(self, store: Store | None) -> None:
        if store is None:
            self._owners = {}
            return
        from openclone.store.fine_tuning import model_owners

        self._owners = await asyncio.to_thread(model_owners, store)

    async def check(self, store: Store | None, who: Principal | None, *names: str) -> None:
        """Raise the unknown model's 404 unless ``who`` may use every one of ``names`` (the
        name asked for and the model it resolves to)."""
        if self._owners is None:
            await self.refresh(store)
        if not all(self.may_use(who, n) for n in names):
            raise ModelNotFound(
                f"The model '{names[0]}' does not exist or you do not have access to it.",
                param="model",
            )

    async def visible(
        self, store: Store | None, who: Principal | None, names: list[str]
    ) -> list[str]:
        """``names`` less those ``who`` may not use, for ``/v1/models``."""
        if self._owners is None:
            await self.refresh(store)
        return [n for n in names if self.may_use(who, n)]

    def owned(self, name: str) -> bool:
        """Whether ``name`` (or what it stands for) is some tenant's; unknown until read."""
        return self._owners is None or any(p in self._owners for p in _parts(name))

    def may_use(self, who: Principal | None, name: str) -> bool:
        if who is None or who.is_admin or not self._owners:
            return True
        return all(self._owners.get(part, who.tenant) == who.tenant for part in _parts(name))


def _parts(name: str) -> Iterator[str]:
    """The names ``name`` stands for: itself, its model without ``@N``, its adapter."""
    yield name
    stem, at, number = name.rpartition("@")
    if at and stem and number.isdigit():
        yield stem
    parsed = parse_model_name(name)
    if parsed.adapter is not None:  # BASE:RUN serves RUN's adapter (ft: names are whole)
        yield parsed.adapter
