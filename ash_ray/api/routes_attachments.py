"""Attachments: files sent with a session, kept by the Store next to its snapshots.

An attachment is also copied into the session's workspace under ``attachments/`` (the
live one, else its snapshot), where the agent's tools find it. An attachment is its
session's tenant's: by id alone (``/api/attachments/{id}``), another tenant's is a 404.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path
from fastapi.responses import Response

from ash_ray.api.auth import Gatekeeper, Principal
from ash_ray.api.deps import Caller, Ctx, Gate, SessionId, fails
from ash_ray.api.schemas_files import AttachmentCreate, AttachmentList, AttachmentReply
from ash_ray.api.uploads import decode, disposition, on_workspace
from ash_ray.errors import InvalidInput, NotFound, SessionNotFound
from ash_ray.models import new_id, utcnow
from ash_ray.records import AttachmentRecord
from ash_ray.session import files

router = APIRouter(tags=["attachments"])

AttachmentId = Annotated[UUID, Path(description="Attachment id (a UUID).")]


def safe_filename(name: str) -> str:
    """The file's own name: no folders, no NUL, not empty (Ash keeps the basename too)."""
    base = name.replace("\x00", "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    if base in ("", ".", ".."):
        raise InvalidInput(f"filename {name!r} has no usable file name")
    return base[:255]


async def _check_owner(record: AttachmentRecord, caller: Principal, gate: Gatekeeper) -> None:
    """404, as for an unknown id, unless the attachment's session is the caller's tenant's."""
    try:
        await gate.check_owner(record.session_id, caller)
    except SessionNotFound:
        raise NotFound(f"attachment {record.id} does not exist") from None


@router.post(
    "/api/sessions/{session_id}/attachments",
    status_code=201,
    response_model=AttachmentReply,
    responses=fails(400, 404, 413, 503),
)
async def create_attachment(sid: SessionId, body: AttachmentCreate, ctx: Ctx) -> dict[str, Any]:
    """Store a base64 file (up to ASH_MAX_ATTACHMENT_SIZE) and copy it into the workspace."""
    filename = safe_filename(body.filename)
    data = decode(body.content, "content", ctx.settings.max_attachment_size)
    if not data:
        raise InvalidInput("content is empty")
    record = AttachmentRecord(
        id=new_id(), session_id=sid, message_id=str(body.message_id) if body.message_id else None,
        filename=filename, mime_type=body.mime_type, size=len(data),
        sha256=hashlib.sha256(data).hexdigest(), created_at=utcnow(),
    )
    await ctx.registry.put_attachment(record, data)
    item = [(f"attachments/{filename}", data)]
    with contextlib.suppress(NotFound):  # a session without any workspace yet
        await on_workspace(
            ctx, sid, lambda s: s.files_write(item, "."), files.write_files, item, ".",
            mutates=True,
        )
    return {"attachment": record.public()}


@router.get(
    "/api/sessions/{session_id}/attachments",
    response_model=AttachmentList,
    responses=fails(400, 404, 503),
)
async def list_attachments(sid: SessionId, ctx: Ctx) -> dict[str, Any]:
    """The session's attachments, oldest first."""
    found = await ctx.registry.list_attachments(sid)
    return {"attachments": [a.public() for a in found]}


@router.get(
    "/api/attachments/{attachment_id}",
    response_class=Response,
    responses={**fails(400, 404, 503), 200: {
        "description": "The attachment's bytes, typed as uploaded.",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }},
)
async def download_attachment(
    attachment_id: AttachmentId, ctx: Ctx, caller: Caller, gate: Gate
) -> Response:
    """The raw bytes, typed as uploaded; ``nosniff`` so a browser never runs them."""
    # Owner first: another tenant's bytes are never loaded, not even to answer 404.
    await _check_owner(await ctx.registry.get_attachment(str(attachment_id)), caller, gate)
    record, data = await ctx.registry.read_attachment(str(attachment_id))
    return Response(
        data,
        media_type=record.mime_type,
        headers={
            "Content-Disposition": disposition(record.filename),
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.delete(
    "/api/attachments/{attachment_id}",
    status_code=204,
    response_class=Response,
    responses=fails(400, 404, 503),
)
async def delete_attachment(
    attachment_id: AttachmentId, ctx: Ctx, caller: Caller, gate: Gate
) -> Response:
    """Forget the attachment (the copy in the workspace stays: the agent may use it)."""
    await _check_owner(await ctx.registry.get_attachment(str(attachment_id)), caller, gate)
    await ctx.registry.delete_attachment(str(attachment_id))
    return Response(status_code=204)
