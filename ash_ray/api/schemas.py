"""Response schemas of the HTTP API, named by role, and the SSE event union.

Request bodies live in :mod:`ash_ray.models` (the pipeline API validates with them too).
Item models allow extra keys, so that a field the registry adds reaches the client
unchanged; what they name is what the API promises.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ash_ray.models import SessionStatus


class Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorOut(BaseModel):
    """Every error answer: the problem in words and the HTTP status again."""

    error: str
    status_code: int = Field(alias="statusCode")


# ---------------------------------------------------------------- agents


class AgentOut(Out):
    id: str
    name: str
    version: int
    path: str
    created_at: str = Field(alias="createdAt")
    updated_at: str = Field(alias="updatedAt")


class AgentReply(BaseModel):
    agent: AgentOut


class AgentList(BaseModel):
    agents: list[AgentOut]


class OkReply(BaseModel):
    ok: bool


# ---------------------------------------------------------------- sessions


class SessionOut(Out):
    id: str
    agent_name: str = Field(alias="agentName")
    sandbox_id: str = Field(alias="sandboxId")
    status: SessionStatus
    created_at: str = Field(alias="createdAt")
    last_active_at: str = Field(alias="lastActiveAt")
    parent_session_id: str | None = Field(alias="parentSessionId")
    model: str | None = Field(None, description="The session's model; null: the agent's.")
    config: dict[str, Any] | None = Field(
        None, description="What the session was created or patched with (secrets as ***)."
    )


class SessionReply(BaseModel):
    session: SessionOut


class SessionList(BaseModel):
    sessions: list[SessionOut]


class InterruptReply(BaseModel):
    ok: bool
    interrupted: bool = Field(description="Whether a running turn was interrupted.")
    session: SessionOut


class CompactOut(Out):
    """What a compaction summarized (the ``compact`` event's data)."""

    trigger: str
    summarized_messages: int = Field(alias="summarizedMessages")
    summarized_turns: int = Field(alias="summarizedTurns")
    kept_messages: int = Field(alias="keptMessages")
    tokens_before: int = Field(alias="tokensBefore")
    tokens_after: int = Field(alias="tokensAfter")
    summary: str


class CompactReply(BaseModel):
    ok: bool
    compacted: bool = Field(description="False when there was nothing old enough to summarize.")
    compact: CompactOut | None = None
    session: SessionOut


class MessageOut(Out):
    id: str
    session_id: str = Field(alias="sessionId")
    role: Literal["user", "assistant"]
    content: str = Field(description="The whole Claude Agent SDK message as JSON text.")
    sequence: int
    created_at: str = Field(alias="createdAt")


class MessageList(BaseModel):
    messages: list[MessageOut]


class TimelineEvent(Out):
    id: str
    session_id: str = Field(alias="sessionId")
    type: Literal["lifecycle", "text", "reasoning", "tool_start", "tool_result",
                  "turn_complete", "error", "mcp_status"]
    sequence: int
    created_at: str = Field(alias="createdAt")
    data: str = Field(description="The entry as JSON text; the stored event type under event.")


class EventList(BaseModel):
    events: list[TimelineEvent]


class ExecResult(BaseModel):
    exit_code: int = Field(alias="exitCode")
    stdout: str
    stderr: str


# ---------------------------------------------------------------- health


class PoolOut(Out):
    total: int
    cold: int
    warming: int
    warm: int
    waiting: int
    running: int
    max_capacity: int = Field(alias="maxCapacity")
    resume_warm_hits: int = Field(alias="resumeWarmHits")
    resume_cold_hits: int = Field(alias="resumeColdHits")
    pre_warm_hits: int = Field(alias="preWarmHits")


class SandboxIsolationOut(Out):
    """The isolation a default sandbox gets on this node."""

    filesystem: Literal["bwrap", "none", "unavailable"]
    network: Literal["isolated-egress", "loopback-only", "host", "unavailable"]
    egress: bool = Field(description="The ASH_SANDBOX_NETWORK setting.")
    limits: str = Field(description="cgroup2, cgroup1, rlimit or unavailable.")
    degraded: list[str] = Field(description="Why isolation is weaker than it could be.")


class HealthOut(Out):
    status: Literal["ok"]
    version: str
    active_sessions: int = Field(alias="activeSessions")
    active_sandboxes: int = Field(alias="activeSandboxes")
    uptime: float = Field(description="Seconds since this ingress replica started.")
    pool: PoolOut
    pool_ready: int = Field(alias="poolReady")
    store: str
    sandbox_limits: str = Field(alias="sandboxLimits")
    sandbox_isolation: SandboxIsolationOut = Field(alias="sandboxIsolation")
    auth: bool
    accepting: bool = Field(description="False while draining: the answer is then a 503.")


# ---------------------------------------------------------------- SSE


class SseEvent(BaseModel):
    """One frame: ``id: <seq>``, ``event: <type>``, ``data: <json>``."""

    model_config = ConfigDict(extra="allow")
    id: int = Field(description="The event's sequence number (send it back as Last-Event-ID).")


class SessionStart(SseEvent):
    event: Literal["session_start"]
    data: dict[str, Any] = Field(description="{sessionId, version}")


class TextDelta(SseEvent):
    event: Literal["text_delta", "thinking_delta"]
    data: dict[str, Any] = Field(description="{delta} (with includePartialMessages)")


class ToolUse(SseEvent):
    event: Literal["tool_use"]
    data: dict[str, Any] = Field(description="{id, name, input}")


class ToolResult(SseEvent):
    event: Literal["tool_result"]
    data: dict[str, Any] = Field(description="{tool_use_id, content, is_error}")


class Message(SseEvent):
    event: Literal["message"]
    data: dict[str, Any] = Field(description="The whole message, as the Agent SDK shapes it.")


class TurnComplete(SseEvent):
    event: Literal["turn_complete"]
    data: dict[str, Any] = Field(description="{numTurns, result}")


class ErrorEvent(SseEvent):
    event: Literal["error"]
    data: dict[str, Any] = Field(description="{error}")


class Done(SseEvent):
    event: Literal["done"]
    data: dict[str, Any] = Field(description="{sessionId}: always the last frame of a turn.")


class OtherEvent(SseEvent):
    event: str = Field(
        description="Other types (mcp_status, todo, compact, ...; lifecycle {action, ...} "
        "between turns, as GET .../events lists it)."
    )
    data: dict[str, Any]


SseEventUnion = Annotated[
    SessionStart | TextDelta | ToolUse | ToolResult | Message | TurnComplete | ErrorEvent
    | Done | OtherEvent,
    Field(description="A turn's events, in order; comment lines (': ping') are heartbeats."),
]


# ---------------------------------------------------------------- api keys, credentials


class ApiKeyOut(Out):
    id: str
    label: str | None
    key_prefix: str = Field(alias="keyPrefix", description="Enough to tell keys apart.")
    created_at: str | None = Field(None, alias="createdAt")


class ApiKeyCreated(Out):
    id: str
    key: str = Field(description="The key itself, shown this once (only its hash is kept).")
    tenant_id: str = Field(alias="tenantId")


class CredentialOut(Out):
    id: str
    type: str
    label: str | None
    active: bool
    created_at: str = Field(alias="createdAt")
    last_used_at: str | None = Field(alias="lastUsedAt")


class CredentialReply(BaseModel):
    credential: CredentialOut


class CredentialList(BaseModel):
    credentials: list[CredentialOut]
