"""/api/queue: durable prompts run by the jobs actor's queue worker (Ash's queue).

Items are the caller's tenant's: another tenant's item is a 404, in lists and stats too.
An item runs as its tenant: its agent, and the session it names, must be the tenant's
(else 404 here), and a session the worker opens for it is the tenant's.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from ash_ray.api.deps import Caller, Ctx, Gate, fails
from ash_ray.errors import InvalidInput, NotFound
from ash_ray.models import AGENT_NAME_RE, MAX_INT64, PROMPT_MAX, iso

router = APIRouter(prefix="/api/queue", tags=["queue"])

QueueStatus = Literal["pending", "processing", "completed", "failed", "cancelled"]


class QueueCreate(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    agent_name: str = Field(pattern=AGENT_NAME_RE.pattern, max_length=128)
    prompt: str = Field(min_length=1, max_length=PROMPT_MAX)
    session_id: UUID | None = None
    priority: int = Field(0, ge=0, le=MAX_INT64)
    max_retries: int = Field(3, ge=0, le=100)


class QueueItemOut(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str
    tenant_id: str = Field(alias="tenantId")
    agent_name: str = Field(alias="agentName")
    prompt: str
    session_id: str | None = Field(alias="sessionId")
    status: QueueStatus
    priority: int
    retry_count: int = Field(alias="retryCount")
    max_retries: int = Field(alias="maxRetries")
    error: str | None
    result: str | None
    created_at: str = Field(alias="createdAt")
    started_at: str | None = Field(alias="startedAt")
    completed_at: str | None = Field(alias="completedAt")


class QueueItemReply(BaseModel):
    item: QueueItemOut


class QueueList(BaseModel):
    items: list[QueueItemOut]


class QueueStatsOut(BaseModel):
    pending: int
    processing: int
    completed: int
    failed: int
    cancelled: int


class QueueStatsReply(BaseModel):
    stats: QueueStatsOut


def public(row: dict[str, Any]) -> dict[str, Any]:
    """A Store row as the wire item (ISO timestamps, camelCase)."""

    def ts(key: str) -> str | None:
        return iso(row[key]) if row.get(key) is not None else None

    return {
        "id": row["id"], "tenantId": row["tenant_id"], "agentName": row["agent_name"],
        "prompt": row["prompt"], "sessionId": row["session_id"], "status": row["status"],
        "priority": row["priority"], "retryCount": row["retry_count"],
        "maxRetries": row["max_retries"], "error": row["error"], "result": row["result"],
        "createdAt": ts("created_at"), "startedAt": ts("started_at"),
        "completedAt": ts("completed_at"),
    }  # fmt: skip


ItemId = Annotated[UUID, Path(description="Queue item id (a UUID; anything else is a 400).")]


@router.post("", status_code=201, response_model=QueueItemReply, responses=fails(400, 404, 413))
async def add(body: QueueCreate, ctx: Ctx, caller: Caller, gate: Gate) -> dict[str, Any]:
    """Queue a prompt for an agent (on a new session, or on ``sessionId``)."""
    await ctx.registry.get_agent(body.agent_name, caller.tenant)  # 404: not the tenant's
    session_id = str(body.session_id) if body.session_id else None
    if session_id is not None:
        await gate.check_owner(session_id, caller)  # 404: unknown, or another tenant's
    item = await ctx.jobs.queue_add({
        "agent_name": body.agent_name, "prompt": body.prompt, "session_id": session_id,
        "priority": body.priority, "max_retries": body.max_retries,
    }, caller.tenant)  # fmt: skip
    return {"item": public(item)}


@router.get("", response_model=QueueList, responses=fails(400))
async def list_items(
    ctx: Ctx,
    caller: Caller,
    status: QueueStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Items, newest first, optionally in one status."""
    return {"items": [public(r) for r in await ctx.jobs.queue_list(status, limit, caller.tenant)]}


@router.get("/stats", response_model=QueueStatsReply)
async def stats(ctx: Ctx, caller: Caller) -> dict[str, Any]:
    """How many of the tenant's items are in each status."""
    return {"stats": await ctx.jobs.queue_stats(caller.tenant)}


@router.get("/{item_id}", response_model=QueueItemReply, responses=fails(400, 404))
async def get_item(item_id: ItemId, ctx: Ctx, caller: Caller) -> dict[str, Any]:
    item = await ctx.jobs.queue_get(str(item_id), caller.tenant)
    if item is None:
        raise NotFound(f"queue item {item_id} not found")
    return {"item": public(item)}


@router.delete("/{item_id}", response_model=QueueItemReply, responses=fails(400, 404))
async def cancel(item_id: ItemId, ctx: Ctx, caller: Caller) -> dict[str, Any]:
    """Cancel a pending item (400 once it runs or ended)."""
    item = await ctx.jobs.queue_cancel(str(item_id), caller.tenant)
    if item is not None:
        return {"item": public(item)}
    found = await ctx.jobs.queue_get(str(item_id), caller.tenant)
    if found is None:
        raise NotFound(f"queue item {item_id} not found")
    raise InvalidInput(f"queue item {item_id} is {found['status']}: only pending items cancel")
