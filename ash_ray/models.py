"""Wire schemas (HTTP JSON, camelCase like Ash) and store rows (snake_case)."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

SessionStatus = Literal["starting", "active", "paused", "stopped", "ended", "error"]
SESSION_STATUSES: tuple[str, ...] = ("starting", "active", "paused", "stopped", "ended", "error")
AGENT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def new_id() -> str:
    return str(uuid.uuid4())


def parse_uuid(value: str, what: str = "session id") -> str:
    """Return the canonical form of a uuid string or raise InvalidInput naming ``what``."""
    from ash_ray.errors import InvalidInput

    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise InvalidInput(f"{what} must be a UUID, got {value!r}") from None


class Wire(BaseModel):
    """Base of JSON bodies: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def dump(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# ---------------------------------------------------------------- requests


class AgentCreate(Wire):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    name: str = Field(description="Agent name: letters, digits, '.', '_' or '-'.")
    path: str = Field(min_length=1, description="Folder holding CLAUDE.md, on the server.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not AGENT_NAME_RE.match(value):
            raise ValueError("agent name must match [A-Za-z0-9][A-Za-z0-9._-]{0,127}")
        return value


class AgentPatch(Wire):
    path: str | None = Field(None, min_length=1)


class SessionCreate(Wire):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    agent: str = Field(min_length=1)
    model: str | None = None
    system_prompt: str | None = None
    extra_env: dict[str, str] | None = None
    allowed_tools: list[str] | None = None
    disallowed_tools: list[str] | None = None
    permission_mode: str | None = None
    credential_id: str | None = None
    mcp_servers: dict[str, Any] | None = None
    betas: list[str] | None = None
    subagents: dict[str, Any] | None = None
    initial_agent: str | None = None

    @field_validator("extra_env")
    @classmethod
    def _env_names(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for key in value or {}:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                raise ValueError(f"extraEnv name {key!r} is not a valid variable name")
        return value


class SessionConfigPatch(Wire):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    model: str | None = None
    system_prompt: str | None = None
    allowed_tools: list[str] | None = None
    disallowed_tools: list[str] | None = None
    permission_mode: str | None = None
    extra_env: dict[str, str] | None = None


class MessageCreate(Wire):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    content: str = Field(min_length=1, max_length=1_000_000)
    include_partial_messages: bool = False
    model: str | None = None
    max_turns: int | None = Field(None, ge=1, le=10_000)
    max_budget_usd: float | None = Field(None, gt=0)
    effort: str | None = None
    thinking: dict[str, Any] | None = None
    output_format: dict[str, Any] | None = None


class ExecRequest(Wire):
    command: str = Field(min_length=1)
    timeout: float | None = Field(None, gt=0, le=86_400, description="Seconds (Ash: ms if >1000).")


# ---------------------------------------------------------------- rows


class AgentRecord(BaseModel):
    id: str
    name: str
    version: int = 1
    path: str
    created_at: datetime
    updated_at: datetime

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "path": self.path,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
        }


class SessionConfig(BaseModel):
    """What a session was created with; frozen per session, patched by PATCH .../config."""

    model: str | None = None
    system_prompt: str | None = None
    extra_env: dict[str, str] = Field(default_factory=dict)
    allowed_tools: list[str] | None = None
    disallowed_tools: list[str] | None = None
    permission_mode: str | None = None


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
            "agentName": self.agent_name,
            "sandboxId": self.sandbox_id,
            "status": self.status,
            "createdAt": iso(self.created_at),
            "lastActiveAt": iso(self.last_active_at),
            "parentSessionId": self.parent_session_id,
        }
        if self.config.model:
            out["model"] = self.config.model
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


class WriteBatch(BaseModel):
    """Everything one flush writes, in one transaction."""

    sessions: list[SessionRecord] = Field(default_factory=list)
    messages: list[MessageRecord] = Field(default_factory=list)
    events: list[EventRecord] = Field(default_factory=list)
    usage: list[UsageRecord] = Field(default_factory=list)

    def empty(self) -> bool:
        return not (self.sessions or self.messages or self.events or self.usage)
