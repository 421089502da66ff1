"""/api/sessions: create, list, inspect, and the lifecycle (pause, stop, resume, fork, end)."""

from __future__ import annotations

from typing import Annotated, Any

import ray
from fastapi import APIRouter, Query

from ash_ray.api.deps import Caller, Ctx, Gate, SessionId, fails
from ash_ray.api.schemas import CompactReply, InterruptReply, SessionList, SessionReply
from ash_ray.models import MAX_INT64, NAME_MAX, SessionConfigPatch, SessionCreate, SessionStatus

router = APIRouter(prefix="/api/sessions", tags=["sessions"])
# The one optional field of a session (model) is left out when unset, as before.
ONE: dict[str, Any] = {"response_model": SessionReply, "response_model_exclude_unset": True}


@router.post("", status_code=201, **ONE, responses=fails(400, 404, 413, 503))
async def create(body: SessionCreate, ctx: Ctx, caller: Caller, gate: Gate) -> dict[str, Any]:
    """Open a session on a deployed agent (503 when every slot runs a turn).

    With ``credentialId`` the session's model calls use that stored credential (400 when
    the caller's tenant has no such credential).
    """
    session = await ctx.registry.create_session(body.as_config(), caller.tenant)
    gate.remember_owner(session.id, session.tenant_id)
    return {"session": session.public()}


@router.get(
    "", response_model=SessionList, response_model_exclude_unset=True, responses=fails(400)
)
async def list_sessions(
    ctx: Ctx,
    caller: Caller,
    agent: Annotated[str | None, Query(max_length=NAME_MAX)] = None,
    status: SessionStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_INT64)] = 0,
) -> dict[str, Any]:
    """The caller's tenant's sessions, newest first, filtered by agent name and status."""
    found = await ctx.registry.list_sessions(agent, status, limit, offset, caller.tenant)
    return {"sessions": [s.public() for s in found]}


@router.get("/{session_id}", **ONE, responses=fails(400, 404))
async def get_session(sid: SessionId, ctx: Ctx) -> dict[str, Any]:
    return {"session": (await ctx.registry.get_session(sid)).public()}


@router.delete("/{session_id}", **ONE, responses=fails(400, 404, 409))
async def delete_session(sid: SessionId, ctx: Ctx) -> dict[str, Any]:
    """End a session for good (its sandbox goes; its history stays readable)."""
    ctx.forget(sid)
    return {"session": (await ctx.registry.end(sid)).public()}


@router.post("/{session_id}/pause", **ONE, responses=fails(400, 404, 409, 410))
async def pause(sid: SessionId, ctx: Ctx) -> dict[str, Any]:
    return {"session": (await ctx.registry.pause(sid)).public()}


@router.post("/{session_id}/stop", **ONE, responses=fails(400, 404, 409, 410))
async def stop(sid: SessionId, ctx: Ctx) -> dict[str, Any]:
    ctx.forget(sid)
    return {"session": (await ctx.registry.stop(sid)).public()}


@router.post("/{session_id}/resume", **ONE, responses=fails(400, 404, 409, 410, 503))
async def resume(sid: SessionId, ctx: Ctx) -> dict[str, Any]:
    return {"session": (await ctx.registry.resume(sid)).public()}


@router.post(
    "/{session_id}/fork", status_code=201, **ONE, responses=fails(400, 404, 409, 410, 503)
)
async def fork(sid: SessionId, ctx: Ctx) -> dict[str, Any]:
    """A paused copy of the session: its conversation and its workspace."""
    return {"session": (await ctx.registry.fork(sid)).public()}


@router.patch("/{session_id}/config", **ONE, responses=fails(400, 404, 409, 410, 413))
async def patch_config(sid: SessionId, body: SessionConfigPatch, ctx: Ctx) -> dict[str, Any]:
    """Change the session's settings; fields not sent keep their value."""
    return {"session": (await ctx.registry.patch_config(sid, body.changes())).public()}


@router.post(
    "/{session_id}/interrupt",
    response_model=InterruptReply,
    response_model_exclude_unset=True,
    responses=fails(400, 404),
)
async def interrupt(sid: SessionId, ctx: Ctx) -> dict[str, Any]:
    """Stop the running turn, if any (its stream ends with ``error`` and ``done``)."""
    session = await ctx.registry.get_session(sid)
    live = await ctx.live_session(sid)
    interrupted = False
    if live is not None:
        try:
            interrupted = await live.interrupt()
        except ray.exceptions.RayError:
            interrupted = False
    return {"ok": True, "interrupted": interrupted, "session": session.public()}


@router.post(
    "/{session_id}/compact",
    response_model=CompactReply,
    response_model_exclude_unset=True,
    responses=fails(400, 404, 409, 410, 503),
)
async def compact(sid: SessionId, ctx: Ctx) -> dict[str, Any]:
    """Summarize the session's older turns now (409 while a turn runs).

    ``GET .../messages`` keeps the full history; the model, and a cold resume, continue
    from the summary and the recent turns.
    """
    session = await ctx.session(sid)
    event = await session.compact()
    record = await ctx.registry.get_session(sid)
    reply: dict[str, Any] = {"ok": True, "compacted": event is not None, "session": record.public()}
    if event is not None:
        reply["compact"] = event
    return reply
