"""Store rows (snake_case): agents, sessions, messages, events, usage, the turn queue."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic.alias_generators import to_camel

from ash_ray.models.base import DEFAULT_TENANT, SessionStatus, iso


class AgentRecord(BaseModel):
    id: str
    name: str
    tenant_id: str = DEFAULT_TENANT
    version: int = 1
    path: str
    created_at: datetime
    updated_at: datetime
    env: dict[str, str] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "tenantId": self.tenant_id,
            "version": self.version,
            "path": self.path,
            # Values are secrets (API tokens): names only, in every response.
            "env": {key: "***" for key in self.env},
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
        }


class AgentVersionRecord(BaseModel):
    """One of Ash's agent versions: a named system prompt with notes; one is active."""

    id: str
    agent_name: str
    version_number: int
    name: str
    system_prompt: str | None = None
    release_notes: str | None = None
    knowledge_files: list[str] | None = None
    is_active: bool = False
    created_at: datetime
    updated_at: datetime

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "agentName": self.agent_name,
            "versionNumber": self.version_number,
            "name": self.name,
            "systemPrompt": self.system_prompt,
            "releaseNotes": self.release_notes,
            "knowledgeFiles": self.knowledge_files,
            "isActive": self.is_active,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
        }


class AgentRef(BaseModel):
    """What a session worker needs to materialize an agent: which archive, and its env."""

    name: str
    version: int
    sha256: str
    env: dict[str, str] = Field(default_factory=dict)
    tenant: str = DEFAULT_TENANT


class SessionConfig(BaseModel):
    """What a session was created with; frozen per session, patched by PATCH .../config."""

    model: str | None = None
    system_prompt: str | None = None
    extra_env: dict[str, str] = Field(default_factory=dict)
    allowed_tools: list[str] | None = None
    disallowed_tools: list[str] | None = None
    permission_mode: str | None = None
    # JSON as validated at the edge (models.SessionCreate), snake_case keys.
    mcp_servers: dict[str, dict[str, Any]] | None = None
    betas: list[str] | None = None
    subagents: dict[str, dict[str, Any]] | None = None
    initial_agent: str | None = None
    effort: str | None = None
    thinking: dict[str, Any] | None = None
    # The agent version the session started with; its workspace and CLAUDE.md come
    # from that version's archive, whatever was deployed since (None: before v2).
    agent_version: int | None = None

    def public(self) -> dict[str, Any]:
        """The config in camelCase as set; secrets (env values, MCP headers) as ``***``."""
        out = self.model_dump(exclude_none=True, exclude={"extra_env", "mcp_servers"})
        out = {to_camel(k): v for k, v in out.items()}
        if self.extra_env:
            out["extraEnv"] = dict.fromkeys(self.extra_env, "***")
        if self.mcp_servers:
            out["mcpServers"] = {
                name: {
                    to_camel(k): dict.fromkeys(v, "***") if k in ("env", "headers") and v else v
                    for k, v in server.items() if v is not None
                }
                for name, server in self.mcp_servers.items()
            }
        return out
    # A stored credential of the session's tenant; its key is decrypted only in the worker.
    credential_id: str | None = None


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    def add(self, other: Usage) -> Usage:
        return Usage(**{k: getattr(self, k) + getattr(other, k) for k in Usage.model_fields})


class SessionRecord(BaseModel):
    id: str
    agent_name: str
    tenant_id: str = DEFAULT_TENANT
    sandbox_id: str
    status: SessionStatus
    created_at: datetime
    last_active_at: datetime
    parent_session_id: str | None = None
    config: SessionConfig = Field(default_factory=SessionConfig)
    usage: Usage = Field(default_factory=Usage)
    num_turns: int = 0
    last_seq: int = 0

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "tenantId": self.tenant_id,
            "agentName": self.agent_name,
            "sandboxId": self.sandbox_id,
            "status": self.status,
            "createdAt": iso(self.created_at),
            "lastActiveAt": iso(self.last_active_at),
            "parentSessionId": self.parent_session_id,
            "model": self.config.model,
            "config": self.config.public(),
        }
        return out


class MessageRecord(BaseModel):
    """One conversation entry in Messages-API form: role + content (str or blocks)."""

    id: str
    session_id: str
    sequence: int
    role: Literal["user", "assistant"]
    content: Any
    created_at: datetime

    def api(self) -> dict[str, Any]:
        return {"role": self.role, "content": self.content}

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sessionId": self.session_id,
            "role": self.role,
            "content": json.dumps(self.content),
            "sequence": self.sequence,
            "createdAt": iso(self.created_at),
        }


class EventRecord(BaseModel):
    """One SSE event of a session, numbered across the session's life."""

    session_id: str
    seq: int
    type: str
    data: dict[str, Any]
    created_at: datetime


class UsageRecord(BaseModel):
    session_id: str
    agent_name: str
    turn: int
    model: str
    usage: Usage
    created_at: datetime
    tool_calls: int = 0
    messages: int = 0
    compute_ms: int = 0
    """Wall time of the turn (the model's calls and the tools), in milliseconds."""


class QueuedTurn(BaseModel):
    """A message waiting for its turn (``queued``) or being answered (``running``).

    Written to the store before a queued message is acknowledged, and while a turn runs,
    so that a new worker re-runs the queue and continues the turn after a crash.
    """

    session_id: str
    message_id: str
    position: int
    prompt: str | list[dict[str, Any]]  # text, or Messages-API content blocks
    options: dict[str, Any] = Field(default_factory=dict)
    state: Literal["queued", "running"] = "queued"


class WriteBatch(BaseModel):
    """Everything one flush writes, in one transaction."""

    sessions: list[SessionRecord] = Field(default_factory=list)
    messages: list[MessageRecord] = Field(default_factory=list)
    events: list[EventRecord] = Field(default_factory=list)
    usage: list[UsageRecord] = Field(default_factory=list)
    # The turn queue: messages upserted (a turn that starts running), then the ones
    # deleted as (session_id, message_id) (a turn that ended), in the same transaction.
    turns: list[QueuedTurn] = Field(default_factory=list)
    turns_done: list[tuple[str, str]] = Field(default_factory=list)

    def empty(self) -> bool:
        return not (
            self.sessions or self.messages or self.events or self.usage
            or self.turns or self.turns_done
        )
