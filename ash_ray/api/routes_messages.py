"""/api/sessions/{id}: messages (a turn streamed as SSE), re-attach, history, timeline."""

from __future__ import annotations

from typing import Annotated, Any

import ray
from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from ash_ray.api import history, sse
from ash_ray.api.context import IngressContext
from ash_ray.api.deps import Ctx, SessionId, fails
from ash_ray.api.schemas import EventList, MessageList
from ash_ray.errors import InvalidInput
from ash_ray.handles import SessionClient
from ash_ray.models import MAX_INT64, EventRecord, MessageCreate

router = APIRouter(prefix="/api/sessions/{session_id}", tags=["messages"])

SEQ = Query(ge=0, le=MAX_INT64, description="Only events after this sequence number.")


# Before OpenAPI 3.2 (`itemSchema`), the schema of an event stream describes one event as
# SSE parsers read it: text fields, `data` holding JSON. The frames' union by type (with the
# data of each) is the SseEvent schema, linked beside it.
EVENT_STREAM_SCHEMA = {
    "type": "object",
    "description": "One frame of the text/event-stream body: `id` (the event's sequence "
    "number), `event` (its type) and `data` (JSON). The types and their data: SseEvent.",
    "required": ["event", "data"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "event": {"type": "string", "minLength": 1},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {"type": "object"},
        },
    },
    "x-sse-events": {"$ref": "#/components/schemas/SseEvent"},
}


class EventStream(StreamingResponse):
    media_type = "text/event-stream"


def _sse_doc(what: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "description": f"{what} Frames carry `id: <seq>`, `event: <type>`, `data: <json>`; "
            "the last is always `done`. The frame union is the SseEvent schema.",
            "content": {"text/event-stream": {"schema": EVENT_STREAM_SCHEMA}},
        }
    }


def _streaming(body: Any) -> EventStream:
    return EventStream(body, headers=sse.SSE_HEADERS)


@router.post(
    "/messages",
    response_class=EventStream,
    responses={**_sse_doc("The turn's events."), **fails(400, 404, 409, 410, 413, 503)},
)
async def send(sid: SessionId, body: MessageCreate, ctx: Ctx) -> EventStream:
    """Run a turn and stream its events as SSE (ends with ``done``)."""
    return await turn_stream(ctx, sid, body)


async def turn_stream(ctx: IngressContext, sid: str, body: MessageCreate) -> EventStream:
    """Start the turn, and its events as SSE: the route's answer, and the lane's
    (:mod:`ash_ray.api.lane`, which takes most messages past the router)."""
    heartbeat = ctx.settings.sse_heartbeat_s
    session = await ctx.session(sid)  # a stale worker is re-attached by start_turn
    turn = await sse.start_turn(session, body.content, body.options(), heartbeat)
    return _streaming(sse.pump(session, ctx.registry, sid, 0, heartbeat, turn=turn))


@router.get(
    "/stream",
    response_class=EventStream,
    responses={**_sse_doc("The session's events after the given one."), **fails(400, 404)},
)
async def reattach(
    sid: SessionId,
    ctx: Ctx,
    after: Annotated[int | None, SEQ] = None,
    last_event_id: Annotated[
        str | None, Header(max_length=32, description="The last `id:` the client saw.")
    ] = None,
) -> EventStream:
    """Re-attach to a session's events after ``Last-Event-ID`` (or ``?after=``)."""
    if after is None:
        after = _event_id(last_event_id)
    session = await _live_running(ctx, sid)
    if session is None:
        return _streaming(sse.from_store(ctx.registry, sid, after))
    heartbeat = ctx.settings.sse_heartbeat_s
    return _streaming(sse.pump(session, ctx.registry, sid, after, heartbeat, replay=True))


def _event_id(header: str | None) -> int:
    if not header:
        return 0
    try:
        seq = int(header)
    except ValueError:
        raise InvalidInput("Last-Event-ID must be an event sequence number") from None
    if not 0 <= seq <= MAX_INT64:
        raise InvalidInput(f"Last-Event-ID must be between 0 and {MAX_INT64}")
    return seq


async def _live_running(ctx: Ctx, sid: str) -> SessionClient | None:
    """The worker when a turn is running in it; None means: replay from the store."""
    session = await ctx.live_session(sid)  # 404 for unknown sessions
    if session is None:
        return None
    try:
        info = await session.describe()
    except ray.exceptions.RayError:
        return session  # the pump reports the dead worker
    return session if info.get("turnRunning") else None


@router.get("/messages", response_model=MessageList, responses=fails(400, 404))
async def list_messages(
    sid: SessionId,
    ctx: Ctx,
    after: Annotated[int, SEQ] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> dict[str, Any]:
    """The session's Claude Agent SDK messages as Ash stores them (``content`` is the
    JSON text of the whole message); ``sequence`` is the event's, for ``after``."""
    return {"messages": await history.messages(sid, _reader(ctx, sid), after, limit)}


@router.get("/events", response_model=EventList, responses=fails(400, 404))
async def list_events(
    sid: SessionId,
    ctx: Ctx,
    after: Annotated[int, SEQ] = 0,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
    kind: Annotated[
        history.TimelineType | None, Query(alias="type", description="Only entries of this type.")
    ] = None,
) -> dict[str, Any]:
    """The session's timeline in Ash's types; ``data`` names the stored event under ``event``."""
    return {"events": await history.timeline(sid, _reader(ctx, sid), after, limit, kind)}


def _reader(ctx: Ctx, sid: str) -> history.ReadEvents:
    async def read(after: int, limit: int) -> list[EventRecord]:
        return await ctx.registry.list_events(sid, after, limit)

    return read
