"""The Files API resource: upload, list, retrieve, content, delete (tenant-scoped).

Uploads are ``multipart/form-data`` as the SDK sends them (``file``, ``purpose``, optional
``expires_after[anchor]`` and ``expires_after[seconds]``), checked line by line for their
purpose (:mod:`openclone.data.openai_files`) before they are kept.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from openclone.data.openai_files import UPLOAD_PURPOSES, check_upload
from openclone.errors import InvalidRequestError, UnsupportedParameter
from openclone.gateway.auth import CallerDep, caller
from openclone.gateway.state import Gateway, GatewayDep
from openclone.store import Store
from openclone.store.files import delete_file, file_content, get_file, list_files, save_file
from openclone.store.tables import now

router = APIRouter(prefix="/v1", dependencies=[Depends(caller)])

# OpenAI's other purposes: known, and not served here.
_OTHER_PURPOSES = ("assistants", "vision", "user_data", "evals")
_FIELDS = {"file", "purpose", "expires_after[anchor]", "expires_after[seconds]"}


@router.post("/files")
async def upload(request: Request, who: CallerDep, gw: GatewayDep) -> dict[str, Any]:
    store = need_store(gw)
    form = await request.form(max_files=1, max_fields=len(_FIELDS))
    try:
        for name in form:
            if name not in _FIELDS:
                raise UnsupportedParameter(f"Unknown parameter: '{name}'.", param=name)
        file, purpose = form.get("file"), form.get("purpose")
        if not isinstance(file, UploadFile):
            raise InvalidRequestError("Missing required parameter: 'file'.", param="file")
        if not isinstance(purpose, str) or not purpose:
            raise InvalidRequestError("Missing required parameter: 'purpose'.", param="purpose")
        if purpose in _OTHER_PURPOSES:
            raise UnsupportedParameter(
                f"purpose '{purpose}' is not supported by OpenClone; use one of "
                f"{', '.join(UPLOAD_PURPOSES)}",
                param="purpose",
            )
        if purpose not in UPLOAD_PURPOSES:
            raise InvalidRequestError(
                f"Invalid value for 'purpose': {purpose!r}; expected one of "
                f"{', '.join(UPLOAD_PURPOSES)}.",
                param="purpose",
            )
        expires = _expires_at(form.get("expires_after[anchor]"), form.get("expires_after[seconds]"))
        data = await file.read()
        filename = file.filename or "upload.jsonl"
    finally:
        await form.close()
    rows = await asyncio.to_thread(check_upload, purpose, data)
    record = await asyncio.to_thread(
        save_file, store, who.tenant, purpose, filename, data, rows=rows, expires_at=expires,
        user=who.user,
    )  # fmt: skip
    return record.to_openai()


def _expires_at(anchor: Any, seconds: Any) -> float | None:
    """``expires_after`` as OpenAI takes it: anchor ``created_at``, 1 hour to 30 days."""
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise InvalidRequestError(
            "expires_after[anchor] must be 'created_at'", param="expires_after.anchor"
        )
    try:
        value = int(str(seconds))
    except ValueError:
        value = -1
    if not 3600 <= value <= 2_592_000:
        raise InvalidRequestError(
            "expires_after[seconds] must be between 3600 and 2592000",
            param="expires_after.seconds",
        )
    return now() + value


@router.get("/files")
async def list_(
    who: CallerDep,
    gw: GatewayDep,
    purpose: str | None = None,
    after: str | None = None,
    limit: int = Query(default=10_000, ge=1, le=10_000),
    order: Literal["asc", "desc"] = "desc",
) -> dict[str, Any]:
    page, more = await asyncio.to_thread(
        list_files, need_store(gw), who.tenant, purpose=purpose, after=after, limit=limit,
        order=order,
    )  # fmt: skip
    data = [f.to_openai() for f in page]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": more,
    }


@router.get("/files/{file_id}")
async def retrieve(file_id: str, who: CallerDep, gw: GatewayDep) -> dict[str, Any]:
    record = await asyncio.to_thread(get_file, need_store(gw), who.tenant, file_id)
    return record.to_openai()


@router.get("/files/{file_id}/content")
async def content(file_id: str, who: CallerDep, gw: GatewayDep) -> Response:
    data = await asyncio.to_thread(file_content, need_store(gw), who.tenant, file_id)
    return Response(data, media_type="application/octet-stream")


@router.delete("/files/{file_id}")
async def delete(file_id: str, who: CallerDep, gw: GatewayDep) -> dict[str, Any]:
    await asyncio.to_thread(delete_file, need_store(gw), who.tenant, file_id)
    return {"id": file_id, "object": "file", "deleted": True}


def need_store(gw: Gateway) -> Store:
    """The gateway's store; a bare model server (no store) keeps no files or jobs."""
    if gw.store is None:
        raise InvalidRequestError("this server has no store: it keeps no files or jobs")
    return gw.store
