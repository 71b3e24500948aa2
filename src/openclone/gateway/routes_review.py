"""Dataset review over HTTP (``/api/admin/datasets``): the admin page's Datasets section.

Guarded as the rest of the admin API (:mod:`.routes_admin`): admin keys only, and the
browser checks on every state change. Each route calls the function the CLI
(``openclone data review``) calls, in a worker thread, which audits it with the admin key
as the actor. Paging is by row (``after``), so the last page of 50K rows is as quick as
the first.

Unlike the CLI, which runs as the operator, an admin key reaches only files under the
home: it registers files under ``datasets/`` and ``loops/`` (at most ``max_file_bytes``:
the file is read whole) and exports under ``datasets/``, replacing no file there but an
earlier export of the same dataset — never the master key, the database or the config.
A relative path is taken from the home.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from openclone.errors import InvalidRequestError
from openclone.gateway.auth import AdminDep, admin, audit_actor
from openclone.gateway.review_wire import (
    AnswerPatch,
    DatasetListing,
    DatasetOut,
    ExampleListing,
    ExampleOut,
    ExportBody,
    ExportOut,
    NewDataset,
    ReviewBody,
    ReviewOut,
    State,
)
from openclone.gateway.security import same_origin
from openclone.gateway.state import Gateway, GatewayDep
from openclone.store.review import (
    edit_answer,
    export_approved,
    get_dataset,
    get_example,
    list_datasets,
    list_examples,
    register,
    set_state,
)

__all__ = ["router"]

router = APIRouter(
    prefix="/api/admin/datasets", dependencies=[Depends(same_origin), Depends(admin)]
)
Limit = Annotated[int, Query(ge=1, le=500)]
READABLE = ("datasets", "loops")  # folders of the home a dataset is registered from
WRITABLE = ("datasets",)  # and exported to


def _confined(gw: Gateway, raw: str, folders: tuple[str, ...], param: str) -> Path:
    """``raw`` resolved (links and ``..`` followed), if it lies under one of the home's
    ``folders``; a 400 otherwise."""
    home = gw.settings.home.expanduser().resolve()
    path = (home / Path(raw).expanduser()).resolve()  # an absolute raw replaces home
    roots = [home / f for f in folders]
    if not any(path.is_relative_to(root) for root in roots):
        where = " or ".join(f"{r}/" for r in roots)
        raise InvalidRequestError(
            f"{param}: over HTTP, a path under {where} ({path} is not); the CLI "
            "(`openclone data review`) takes any path",
            param=param, code="path_not_allowed",
        )  # fmt: skip
    return path


@router.get("")
async def datasets(
    gw: GatewayDep, offset: Annotated[int, Query(ge=0)] = 0, limit: Limit = 50
) -> DatasetListing:
    rows = await asyncio.to_thread(list_datasets, gw.need_store(), limit + 1, offset)
    return DatasetListing(data=[DatasetOut.of(d) for d in rows[:limit]], has_more=len(rows) > limit)


@router.post("", status_code=201)
async def add_dataset(body: NewDataset, who: AdminDep, gw: GatewayDep) -> DatasetOut:
    """Register a JSONL file on the server for review (the same file again: a no-op)."""
    path, cap = _confined(gw, body.path, READABLE, "path"), gw.settings.max_file_bytes
    info = await asyncio.to_thread(
        lambda: register(
            gw.need_store(), path, actor=audit_actor(who), tenant=body.tenant, max_bytes=cap
        )
    )
    return DatasetOut.of(info)


@router.get("/{dataset}")
async def dataset(dataset: str, gw: GatewayDep) -> DatasetOut:
    return DatasetOut.of(await asyncio.to_thread(get_dataset, gw.need_store(), dataset))


@router.get("/{dataset}/examples")
async def examples(
    dataset: str,
    gw: GatewayDep,
    state: State | None = None,
    search: Annotated[str | None, Query(max_length=1000)] = None,
    after: Annotated[int, Query(ge=-1, description="the next_after of the page before")] = -1,
    limit: Limit = 50,
) -> ExampleListing:
    store = gw.need_store()
    page = await asyncio.to_thread(
        lambda: list_examples(store, dataset, state=state, search=search, after=after, limit=limit)
    )
    return ExampleListing.of(page)


@router.get("/{dataset}/examples/{row}")
async def example(dataset: str, row: int, gw: GatewayDep) -> ExampleOut:
    return ExampleOut.of(await asyncio.to_thread(get_example, gw.need_store(), dataset, row))


@router.patch("/{dataset}/examples/{row}")
async def edit(
    dataset: str, row: int, body: AnswerPatch, who: AdminDep, gw: GatewayDep
) -> ExampleOut:
    """Edit the answer training gets (``review.edit`` in the audit log)."""
    info = await asyncio.to_thread(
        lambda: edit_answer(gw.need_store(), dataset, row, body.answer, actor=audit_actor(who))
    )
    return ExampleOut.of(info)


@router.post("/{dataset}/review")
async def review(dataset: str, body: ReviewBody, who: AdminDep, gw: GatewayDep) -> ReviewOut:
    """Approve, reject or reset rows, or every row matching a filter (bulk)."""
    if (body.rows is not None) == body.all_matching:
        raise InvalidRequestError("give either rows or all_matching: true", param="rows")
    if body.rows is not None and (body.where_state or body.search):
        raise InvalidRequestError("where_state and search go with all_matching", param="rows")
    store = gw.need_store()

    def run() -> ReviewOut:
        n = set_state(store, dataset, body.state, actor=audit_actor(who), rows=body.rows,
                      where_state=body.where_state, search=body.search)  # fmt: skip
        return ReviewOut(updated=n, dataset=DatasetOut.of(get_dataset(store, dataset)))

    return await asyncio.to_thread(run)


@router.post("/{dataset}/export")
async def export(dataset: str, body: ExportBody, who: AdminDep, gw: GatewayDep) -> ExportOut:
    """Write the approved examples, edits applied, to a JSONL file under the home's
    ``datasets/`` (a new file, or an earlier export of this dataset)."""
    store, actor = gw.need_store(), audit_actor(who)
    out = _confined(gw, body.out, WRITABLE, "out")

    def run() -> ExportOut:
        out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        rows = export_approved(store, dataset, out, actor=actor, replace_own_only=True)
        return ExportOut(path=str(out), rows=rows)

    return await asyncio.to_thread(run)
