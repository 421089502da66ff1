"""/api/usage, /api/usage/stats and /api/analytics: exact sums of the turns' counters.

All of the caller's tenant: its sessions' turns, its agents, its eval runs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ash_ray.api.deps import Caller, Ctx, fails
from ash_ray.models import AGENT_NAME_RE, iso
from ash_ray.store.usage import UsageFilter

router = APIRouter(tags=["usage"])


class UsageEventOut(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str
    session_id: str = Field(alias="sessionId")
    agent_name: str = Field(alias="agentName")
    event_type: str = Field(alias="eventType")
    value: float
    created_at: str = Field(alias="createdAt")


class UsageEvents(BaseModel):
    events: list[UsageEventOut]


class UsageStatsOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    total_input_tokens: int = Field(alias="totalInputTokens")
    total_output_tokens: int = Field(alias="totalOutputTokens")
    total_cache_creation_tokens: int = Field(alias="totalCacheCreationTokens")
    total_cache_read_tokens: int = Field(alias="totalCacheReadTokens")
    total_tool_calls: int = Field(alias="totalToolCalls")
    total_messages: int = Field(alias="totalMessages")
    total_compute_seconds: float = Field(alias="totalComputeSeconds")


class UsageStatsReply(BaseModel):
    stats: UsageStatsOut


class Analytics(BaseModel):
    agents: dict[str, int]
    sessions: dict[str, Any]
    usage: UsageStatsOut
    evals: dict[str, Any]


def _iso_only(value: object) -> object:
    """ISO 8601 text only: pydantic would also read ``1e7`` as a Unix time."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return value
        raise ValueError("must be an ISO 8601 date-time, not a number")
    return value


IsoTime = Annotated[datetime, BeforeValidator(_iso_only)]
After = Annotated[IsoTime | None, Query(description="ISO time; events at or after it.")]
Before = Annotated[IsoTime | None, Query(description="ISO time; events at or before it.")]


async def _filter(
    caller: Caller,
    session_id: Annotated[UUID | None, Query(alias="sessionId")] = None,
    agent_name: Annotated[
        str | None, Query(alias="agentName", pattern=AGENT_NAME_RE.pattern, max_length=128)
    ] = None,
    after: After = None,
    before: Before = None,
) -> UsageFilter:
    return UsageFilter(
        session_id=str(session_id) if session_id else None, agent_name=agent_name,
        after=after, before=before, tenant=caller.tenant,
    )


@router.get("/api/usage", response_model=UsageEvents, responses=fails(400))
async def events(
    ctx: Ctx,
    flt: Annotated[UsageFilter, Depends(_filter)],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """One event per counter of each turn (tokens, tool calls, messages, compute), newest
    first."""
    found = await ctx.jobs.usage_events(flt, limit)
    return {"events": [{**e, "createdAt": iso(e["createdAt"])} for e in found]}


@router.get("/api/usage/stats", response_model=UsageStatsReply, responses=fails(400))
async def stats(ctx: Ctx, flt: Annotated[UsageFilter, Depends(_filter)]) -> dict[str, Any]:
    """Sums of the same events: exact totals of every counter."""
    return {"stats": await ctx.jobs.usage_stats(flt)}


@router.get("/api/analytics", response_model=Analytics, responses=fails(400))
async def analytics(
    ctx: Ctx, caller: Caller, after: After = None, before: Before = None
) -> dict[str, Any]:
    """Agents, sessions by status and usage (in the window when given), eval runs."""
    return await ctx.jobs.analytics(after, before, caller.tenant)
