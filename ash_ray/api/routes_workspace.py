"""/api/sessions/{id}/workspace (tar.gz bundles, both ways) and /logs (tool output)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from ash_ray.api.deps import Ctx, SessionId, fails
from ash_ray.api.schemas_files import LogList, WorkspaceRestored, WorkspaceUpload
from ash_ray.api.uploads import LIVE, decode, disposition, on_workspace
from ash_ray.session import files

router = APIRouter(prefix="/api/sessions/{session_id}", tags=["workspace"])


@router.get(
    "/workspace",
    response_class=Response,
    responses={**fails(400, 404, 409, 413, 503), 200: {
        "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}},
        "description": "The workspace as tar.gz.",
    }},
)
async def download_workspace(sid: SessionId, ctx: Ctx) -> Response:
    """The workspace as tar.gz, live or from the snapshot, without ``.env`` files,
    caches and links that lead outside it."""
    limit = ctx.settings.max_bundle_bytes
    data, source = await on_workspace(
        ctx, sid, lambda s: s.workspace_bundle(), files.bundle, limit
    )
    return Response(
        data,
        media_type="application/gzip",
        headers={"Content-Disposition": disposition(f"{sid}.tar.gz"), "X-Ash-Source": source},
    )


@router.post(
    "/workspace", response_model=WorkspaceRestored, responses=fails(400, 404, 409, 413, 503)
)
async def upload_workspace(sid: SessionId, body: WorkspaceUpload, ctx: Ctx) -> dict[str, Any]:
    """Unpack a base64 tar.gz over the workspace (the live one, else the snapshot).

    400 when it is empty, not gzip, not a tar, or an entry or link would land outside.
    """
    limit = ctx.settings.max_bundle_bytes
    data = decode(body.bundle, "bundle", limit)
    entries, source = await on_workspace(
        ctx, sid, lambda s: s.workspace_restore(data), files.restore, data, limit, mutates=True
    )
    live = source == LIVE
    message = "Workspace restored to live sandbox" if live else "Workspace saved as snapshot"
    return {"ok": True, "message": message, "entries": entries, "source": source}


@router.get("/logs", response_model=LogList, responses=fails(400, 404, 503))
async def session_logs(
    sid: SessionId,
    ctx: Ctx,
    after: Annotated[int, Query(ge=-1, description="Lines with a greater index.")] = -1,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> dict[str, Any]:
    """Tool output (``stdout``/``stderr``) and ``system`` lines, oldest first; kept per
    session up to ASH_SESSION_LOG_LINES and readable after the session went cold."""
    session = await ctx.live_session(sid)
    if session is not None:
        lines = await session.logs(after, limit)
    else:
        lines = await ctx.registry.list_logs(sid, after, limit)
    return {"logs": lines, "source": "sandbox"}
