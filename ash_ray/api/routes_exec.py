"""/api/sessions/{id}/exec: a shell command in the session's sandbox."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ash_ray.api.deps import Ctx, SessionId, fails
from ash_ray.api.schemas import ExecResult
from ash_ray.models import ExecRequest

router = APIRouter(prefix="/api/sessions/{session_id}", tags=["exec"])


@router.post("/exec", response_model=ExecResult, responses=fails(400, 404, 409, 410, 413, 503))
async def exec_command(sid: SessionId, body: ExecRequest, ctx: Ctx) -> dict[str, Any]:
    """Run a shell command in the session sandbox (same limits as the agent's Bash)."""
    session = await ctx.session(sid)
    return dict(await session.exec(body.command, body.timeout_s()))
