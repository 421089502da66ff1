"""/api/sessions/{id}/files: a session's workspace files, live or from its snapshot.

A session with a worker (active or paused, on any node) answers from its live workspace
through the worker; a stopped or ended one from its stored snapshot, which a write then
replaces. ``source`` (and ``X-Ash-Source``) says which: ``sandbox`` or ``snapshot``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from ash_ray.api.deps import Ctx, SessionId, fails
from ash_ray.api.schemas_files import FileContent, FileDeleted, FileList, FilesUpload, FilesWritten
from ash_ray.api.uploads import decode, disposition, media_type, on_workspace
from ash_ray.errors import InvalidInput, PayloadTooLarge
from ash_ray.session import files

router = APIRouter(prefix="/api/sessions/{session_id}/files", tags=["files"])

# ?format=json carries the text in JSON: kept small, as in Ash.
JSON_READ_BYTES = 1024 * 1024
ERRORS = fails(400, 404, 409, 413, 503)


@router.get("", response_model=FileList, responses=ERRORS)
async def list_files(
    sid: SessionId, ctx: Ctx, include_hidden: Annotated[bool, Query(alias="includeHidden")] = True
) -> dict[str, Any]:
    """The workspace's files (caches, VCS data and sockets left out)."""
    found, source = await on_workspace(
        ctx, sid, lambda s: s.files_list(include_hidden), files.list_files, include_hidden
    )
    return {"files": found, "source": source}


@router.get(
    "/{path:path}",
    response_class=Response,
    responses={**ERRORS, 200: {
        "description": "The raw bytes (default) or, with format=json, the text in JSON.",
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": FileContent.model_json_schema()},
        },
    }},
)
async def get_file(
    sid: SessionId, path: str, ctx: Ctx, format: Literal["raw", "json"] = "raw"
) -> Response:
    """One file: raw bytes with ``Content-Disposition`` (default), or JSON up to 1 MiB."""
    limit = JSON_READ_BYTES if format == "json" else ctx.settings.max_file_read_bytes
    (data, info), source = await on_workspace(
        ctx, sid, lambda s: s.file_read(path, limit), files.read_file, path, limit
    )
    if format == "json":
        body = FileContent(
            path=info["path"], content=data.decode("utf-8", "replace"), size=info["size"],
            source=source,  # type: ignore[arg-type]
        )
        return Response(body.model_dump_json(), media_type="application/json")
    name = info["path"].rsplit("/", 1)[-1]
    return Response(
        data,
        media_type=media_type(name),
        headers={"Content-Disposition": disposition(name), "X-Ash-Source": source},
    )


@router.post(
    "", response_model=FilesWritten, response_model_exclude_none=True, responses=ERRORS
)
async def upload_files(sid: SessionId, body: FilesUpload, ctx: Ctx) -> dict[str, Any]:
    """Write a batch of base64 files under ``targetPath``; one result per file.

    Refused as a whole (nothing written): bad base64, a file or the batch over its limit,
    a path that leaves the workspace.
    """
    settings = ctx.settings
    items: list[tuple[str, bytes]] = []
    total = 0
    for i, f in enumerate(body.files):
        data = decode(f.content, f"files[{i}].content ({f.path!r})", settings.max_upload_file_bytes)
        total += len(data)
        if total > settings.max_upload_batch_bytes:
            raise PayloadTooLarge(
                f"the batch is over the {settings.max_upload_batch_bytes}-byte limit "
                f"at files[{i}] ({f.path!r}); send it in smaller batches"
            )
        items.append((f.path, data))
    target = body.target_path
    for path, _ in items:
        if not path.strip():
            raise InvalidInput("a file path is empty")
    results, source = await on_workspace(
        ctx, sid, lambda s: s.files_write(items, target), files.write_files, items, target,
        mutates=True,
    )
    return {"files": results, "source": source}


@router.delete("/{path:path}", response_model=FileDeleted, responses=ERRORS)
async def delete_file(sid: SessionId, path: str, ctx: Ctx) -> dict[str, Any]:
    """Remove one file (a directory is a 400)."""
    rel, source = await on_workspace(
        ctx, sid, lambda s: s.file_delete(path), files.delete_file, path, mutates=True
    )
    return {"path": rel, "deleted": True, "source": source}
