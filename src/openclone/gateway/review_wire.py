"""Bodies of the dataset review API (``/api/admin/datasets``, :mod:`.routes_review`).

Unlike the rest of the admin API these answers carry dataset text (prompts and answers):
reviewing it is the point, and only an admin key gets it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from openclone.store.review import DatasetInfo, ExampleInfo, ExamplePage

__all__ = [
    "AnswerPatch",
    "DatasetListing",
    "DatasetOut",
    "ExampleListing",
    "ExampleOut",
    "ExportBody",
    "ExportOut",
    "NewDataset",
    "ReviewBody",
    "ReviewOut",
]

State = Literal["pending", "approved", "rejected"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field must not pass unnoticed


class DatasetOut(BaseModel):
    id: str
    name: str
    path: str
    sha256: str
    tenant: str
    rows: int
    counts: dict[str, int]
    actor: str
    created: float

    @classmethod
    def of(cls, d: DatasetInfo) -> DatasetOut:
        return cls.model_validate(d.to_dict())


class DatasetListing(BaseModel):
    object: Literal["list"] = "list"
    data: list[DatasetOut]
    has_more: bool


class ExampleOut(BaseModel):
    dataset: str
    row: int
    source: str
    capture_id: str | None
    teacher: str | None
    prompt: str
    messages: list[dict[str, Any]]
    original: str
    answer: str
    edited: bool
    state: str
    reviewer: str | None
    updated: float | None

    @classmethod
    def of(cls, e: ExampleInfo) -> ExampleOut:
        return cls.model_validate(e.to_dict())


class ExampleListing(BaseModel):
    """A page in row order; ``next_after`` is the ``after`` of the next page."""

    object: Literal["list"] = "list"
    data: list[ExampleOut]
    has_more: bool
    total: int
    next_after: int | None

    @classmethod
    def of(cls, page: ExamplePage) -> ExampleListing:
        return cls(data=[ExampleOut.of(e) for e in page.data], has_more=page.has_more,
                   total=page.total, next_after=page.next_after)  # fmt: skip


class NewDataset(_Body):
    path: str = Field(min_length=1, max_length=4096, description="a JSONL file on the server")
    tenant: str | None = None


class AnswerPatch(_Body):
    answer: str = Field(max_length=200_000)


class ReviewBody(_Body):
    """Set ``state`` on ``rows``, or with ``all_matching`` on every row that matches
    ``where_state`` and ``search``."""

    state: State
    rows: list[int] | None = Field(default=None, max_length=10_000)
    all_matching: bool = False
    where_state: State | None = None
    search: str | None = Field(default=None, max_length=1000)


class ReviewOut(BaseModel):
    updated: int
    dataset: DatasetOut


class ExportBody(_Body):
    out: str = Field(min_length=1, max_length=4096, description="a path on the server")


class ExportOut(BaseModel):
    path: str
    rows: int
