"""/api/sessions: lifecycle, messages over SSE, re-attach, events, exec."""

from __future__ import annotations

import json
import uuid
from typing import Any

import ray
from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from ash_ray.api import sse
from ash_ray.api.context import IngressContext
from ash_ray.errors import InvalidInput
from ash_ray.models import (
    SESSION_STATUSES,
    ExecRequest,
    MessageCreate,
    SessionConfigPatch,
    SessionCreate,
    parse_uuid,
)

# Ash's SessionEvent types, from our SSE types (GET .../events speaks Ash's timeline).
TIMELINE_TYPES = {
    "session_start": "lifecycle",
    "done": "lifecycle",
    "text_delta": "text",
    "thinking_delta": "reasoning",
    "tool_use": "tool_start",
    "tool_result": "tool_result",
    "turn_complete": "turn_complete",
    "error": "error",
    "message": "text",
}


def _streaming(body: Any) -> StreamingResponse:
    return StreamingResponse(body, media_type="text/event-stream", headers=sse.SSE_HEADERS)


def sessions_router(ctx: IngressContext) -> APIRouter:
    router = APIRouter(prefix="/api/sessions", tags=["sessions"])

    @router.post("", status_code=201)
    async def create(body: SessionCreate) -> dict[str, Any]:
        """Open a session on a deployed agent (503 when every slot runs a turn)."""
        return {"session": await ctx.registry.create_session.remote(body.model_dump())}

    @router.get("")
    async def list_sessions(
        agent: str | None = None,
        status: str | None = None,
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0),
    ) -> dict[str, Any]:
        if status is not None and status not in SESSION_STATUSES:
            raise InvalidInput(f"status must be one of {', '.join(SESSION_STATUSES)}")
        rows = await ctx.registry.list_sessions.remote(agent, status, limit, offset)
        return {"sessions": rows}

    @router.get("/{session_id}")
    async def get_session(session_id: str) -> dict[str, Any]:
        return {"session": await ctx.registry.get_session.remote(parse_uuid(session_id))}

    @router.delete("/{session_id}")
    async def delete_session(session_id: str) -> dict[str, Any]:
        sid = parse_uuid(session_id)
        ctx.forget(sid)
        return {"session": await ctx.registry.end.remote(sid)}

    @router.post("/{session_id}/pause")
    async def pause(session_id: str) -> dict[str, Any]:
        return {"session": await ctx.registry.pause.remote(parse_uuid(session_id))}

    @router.post("/{session_id}/stop")
    async def stop(session_id: str) -> dict[str, Any]:
        sid = parse_uuid(session_id)
        ctx.forget(sid)
        return {"session": await ctx.registry.stop.remote(sid)}

    @router.post("/{session_id}/resume")
    async def resume(session_id: str) -> dict[str, Any]:
        return {"session": await ctx.registry.resume.remote(parse_uuid(session_id))}

    @router.post("/{session_id}/fork", status_code=201)
    async def fork(session_id: str) -> dict[str, Any]:
        return {"session": await ctx.registry.fork.remote(parse_uuid(session_id))}

    @router.patch("/{session_id}/config")
    async def patch_config(session_id: str, body: SessionConfigPatch) -> dict[str, Any]:
        patch = body.model_dump(exclude_unset=True)
        return {"session": await ctx.registry.patch_config.remote(parse_uuid(session_id), patch)}

    @router.post("/{session_id}/messages")
    async def send(session_id: str, body: MessageCreate) -> StreamingResponse:
        """Run a turn and stream its events as SSE (ends with ``done``)."""
        sid = parse_uuid(session_id)
        options = body.model_dump(exclude={"content"})
        heartbeat = ctx.settings.sse_heartbeat_s
        handle = await ctx.worker(sid)
        try:
            turn = await sse.start_turn(handle, body.content, options, heartbeat)
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
            handle = await ctx.worker(sid, fresh=True)
            turn = await sse.start_turn(handle, body.content, options, heartbeat)
        return _streaming(sse.pump(handle, ctx.registry, sid, 0, heartbeat, turn=turn))

    @router.get("/{session_id}/stream")
    async def reattach(
        session_id: str,
        after: int | None = Query(None, ge=0),
        last_event_id: str | None = Header(None),
    ) -> StreamingResponse:
        """Re-attach to a session's events after ``Last-Event-ID`` (or ``?after=``)."""
        sid = parse_uuid(session_id)
        if after is None:
            try:
                after = int(last_event_id) if last_event_id else 0
            except ValueError:
                raise InvalidInput("Last-Event-ID must be an event sequence number") from None
        handle = await _live_running(sid)
        if handle is None:
            return _streaming(sse.from_store(ctx.registry, sid, after))
        heartbeat = ctx.settings.sse_heartbeat_s
        return _streaming(sse.pump(handle, ctx.registry, sid, after, heartbeat, replay=True))

    async def _live_running(sid: str) -> Any | None:
        """The worker when a turn is running in it; None means: replay from the store."""
        handle = await ctx.registry.live_handle.remote(sid)  # 404 for unknown sessions
        if handle is None:
            return None
        try:
            info = await handle.describe.remote()
        except ray.exceptions.RayError:
            return handle  # the pump reports the dead worker
        return handle if info.get("turnRunning") else None

    @router.post("/{session_id}/interrupt")
    async def interrupt(session_id: str) -> dict[str, Any]:
        sid = parse_uuid(session_id)
        session = await ctx.registry.get_session.remote(sid)
        handle = await ctx.registry.live_handle.remote(sid)
        interrupted = False
        if handle is not None:
            try:
                interrupted = await handle.interrupt.remote()
            except ray.exceptions.RayError:
                interrupted = False
        return {"ok": True, "interrupted": interrupted, "session": session}

    @router.get("/{session_id}/messages")
    async def list_messages(
        session_id: str,
        after: int = Query(0, ge=0),
        limit: int = Query(100, ge=1, le=10_000),
    ) -> dict[str, Any]:
        rows = await ctx.registry.list_messages.remote(parse_uuid(session_id), after, limit)
        return {"messages": rows}

    @router.get("/{session_id}/events")
    async def list_events(
        session_id: str,
        after: int = Query(0, ge=0),
        limit: int = Query(1000, ge=1, le=100_000),
    ) -> dict[str, Any]:
        sid = parse_uuid(session_id)
        rows = await ctx.registry.list_events.remote(sid, after, limit)
        return {"events": [_timeline(sid, *row) for row in rows]}

    @router.post("/{session_id}/exec")
    async def exec_command(session_id: str, body: ExecRequest) -> dict:
        """Run a shell command in the session sandbox (same limits as the agent's Bash)."""
        timeout = body.timeout
        if timeout is not None and timeout > 1000:
            timeout = timeout / 1000  # Ash sends milliseconds
        handle = await ctx.worker(parse_uuid(session_id))
        return dict(await handle.exec.remote(body.command, timeout))

    return router


def _timeline(sid: str, seq: int, type_: str, data: dict, created_at: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{sid}/{seq}")),
        "sessionId": sid,
        "type": TIMELINE_TYPES.get(type_, "lifecycle"),
        "sequence": seq,
        "createdAt": created_at,
        "data": json.dumps({"event": type_, **data}),
    }
