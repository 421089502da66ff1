"""Wire schemas (HTTP JSON, camelCase like Ash) and store rows (snake_case)."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

SessionStatus = Literal["starting", "active", "paused", "stopped", "ended", "error"]
SESSION_STATUSES: tuple[str, ...] = ("starting", "active", "paused", "stopped", "ended", "error")
AGENT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Tenants are named like agents; `default` owns ASH_API_KEY and everything made without a key.
TENANT_RE = AGENT_NAME_RE
DEFAULT_TENANT = "default"
CredentialType = Literal["anthropic", "openai", "bedrock", "custom"]


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

# Bounds of what the API accepts (issue 10: every integer and every path-like value has one).
MAX_INT64 = 2**63 - 1  # sequence numbers, offsets: what SQLite and Postgres can compare
NAME_MAX = 255  # names: models, tools, MCP servers, subagents, betas
PATH_MAX = 4096  # an agent folder on the server (Linux PATH_MAX)
PROMPT_MAX = 1_000_000  # system prompts (Ash: 1,000,000)
ENV_VALUE_MAX = 32 * 1024
LIST_MAX = 256  # entries of a list or a map
# One argv string is capped by the kernel at 128 KiB (MAX_ARG_STRLEN): stay under it.
EXEC_COMMAND_MAX_BYTES = 100 * 1024

# Accepted on the wire, refused with a 400 naming them until their feature lands.
# Flip a field by deleting it here (its value then flows into the session config).
REFUSED_UNTIL_IMPLEMENTED: tuple[str, ...] = ("initial_agent",)


def _refuse_unimplemented(model: Any) -> Any:
    """A 400 naming the first field of REFUSED_UNTIL_IMPLEMENTED the request sets."""
    for field in REFUSED_UNTIL_IMPLEMENTED:
        if getattr(model, field, None) is not None:
            raise PydanticCustomError(
                "not_implemented",
                "{field} is not supported yet: remove it from the request",
                {"field": to_camel(field)},
            )
    return model


def _no_nul(value: str) -> str:
    # A NUL cannot reach a path, an argv or an environment: refuse it at the edge.
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


Name = Annotated[str, StringConstraints(min_length=1, max_length=NAME_MAX), AfterValidator(_no_nul)]
PathText = Annotated[
    str, StringConstraints(min_length=1, max_length=PATH_MAX), AfterValidator(_no_nul)
]
Prompt = Annotated[str, StringConstraints(max_length=PROMPT_MAX)]
EnvValue = Annotated[str, StringConstraints(max_length=ENV_VALUE_MAX), AfterValidator(_no_nul)]
ToolList = Annotated[list[Name], Field(max_length=LIST_MAX)]
PermissionMode = Literal[
    "default", "acceptEdits", "plan", "bypassPermissions", "permissionsByAgent"
]
Effort = Literal["low", "medium", "high", "max"]


class ThinkingConfig(Wire):
    """Extended thinking, as the Messages API takes it (``budgetTokens`` on the wire)."""

    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = Field(None, ge=1024, le=1_000_000)


class McpServer(Wire):
    """One entry of ``mcpServers`` (``.mcp.json`` form): ``url`` (HTTP/SSE) or ``command``."""

    type: Literal["stdio", "http", "sse"] | None = None
    url: Annotated[str, StringConstraints(max_length=PATH_MAX)] | None = None
    headers: Annotated[dict[Name, EnvValue], Field(max_length=LIST_MAX)] | None = None
    command: PathText | None = None
    args: Annotated[list[EnvValue], Field(max_length=LIST_MAX)] | None = None
    env: Annotated[dict[Name, EnvValue], Field(max_length=LIST_MAX)] | None = None

    @model_validator(mode="after")
    def _one_transport(self) -> McpServer:
        if (self.url is None) == (self.command is None):
            raise ValueError("an MCP server has either a url or a command")
        return self


class Subagent(Wire):
    """One entry of ``subagents`` (the Agent SDK's AgentDefinition)."""

    description: Annotated[str, StringConstraints(min_length=1, max_length=10_000)]
    prompt: Prompt
    tools: ToolList | None = None
    disallowed_tools: ToolList | None = None
    model: Name | None = None


McpServers = Annotated[dict[Name, McpServer], Field(max_length=LIST_MAX)]
Subagents = Annotated[dict[Name, Subagent], Field(max_length=LIST_MAX)]
Betas = Annotated[list[Name], Field(max_length=LIST_MAX)]
ExtraEnv = Annotated[dict[str, EnvValue], Field(max_length=LIST_MAX)]


def _check_env_names(value: dict[str, str] | None) -> dict[str, str] | None:
    for key in value or {}:
        if not ENV_NAME_RE.match(key):
            raise ValueError(f"extraEnv name {key[:80]!r} is not a valid variable name")
    return value


class AgentCreate(Wire):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    name: str = Field(
        pattern=AGENT_NAME_RE.pattern,
        description="Agent name: letters, digits, '.', '_' or '-' (at most 128).",
    )
    path: PathText = Field(description="Folder holding CLAUDE.md, on the server.")


class AgentPatch(Wire):
    path: PathText | None = None


class SessionSettings(Wire):
    """What a session is created with and can change later (create and PATCH .../config)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    model: Name | None = None
    system_prompt: Prompt | None = None
    extra_env: ExtraEnv | None = None
    allowed_tools: ToolList | None = None
    disallowed_tools: ToolList | None = None
    permission_mode: PermissionMode | None = None
    betas: Betas | None = None
    subagents: Subagents | None = None
    initial_agent: Name | None = None
    effort: Effort | None = None
    thinking: ThinkingConfig | None = None

    _env_names = field_validator("extra_env")(_check_env_names)
    _refuse = model_validator(mode="after")(_refuse_unimplemented)


class SessionCreate(SessionSettings):
    agent: Name
    credential_id: Name | None = Field(
        None, description="A stored credential (POST /api/credentials) for the model calls."
    )
    mcp_servers: McpServers | None = None

    def as_config(self) -> dict[str, Any]:
        """The registry's create body: snake_case, nested values as JSON, nulls left out."""
        return self.model_dump(exclude_none=True, mode="json")


class SessionConfigPatch(SessionSettings):
    """PATCH .../config: only the fields sent change; null resets a field to its default."""

    def changes(self) -> dict[str, Any]:
        """The patch as SessionConfig fields; a null extraEnv means no extra variables."""
        patch = self.model_dump(exclude_unset=True, mode="json")
        if "extra_env" in patch and patch["extra_env"] is None:
            patch["extra_env"] = {}
        return patch


class MessageCreate(Wire):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    content: str = Field(min_length=1, max_length=1_000_000)
    include_partial_messages: bool = False
    model: Name | None = None
    max_turns: int | None = Field(None, ge=1, le=10_000)
    max_budget_usd: float | None = Field(None, gt=0, le=1_000_000, allow_inf_nan=False)
    effort: Effort | None = None
    thinking: ThinkingConfig | None = None
    output_format: dict[str, Any] | None = None

    def options(self) -> dict[str, Any]:
        """The turn options the worker takes (snake_case; ``thinking`` as the API takes it)."""
        return self.model_dump(exclude={"content"}, exclude_none=True, mode="json")


class ExecRequest(Wire):
    command: str = Field(
        min_length=1,
        max_length=EXEC_COMMAND_MAX_BYTES,
        description=f"Shell command; at most {EXEC_COMMAND_MAX_BYTES} bytes as UTF-8.",
    )
    timeout: float | None = Field(
        None, gt=0, le=86_400_000, allow_inf_nan=False,
        description="Seconds; values over 1000 are milliseconds (as Ash sends them).",
    )

    @field_validator("command")
    @classmethod
    def _command(cls, value: str) -> str:
        _no_nul(value)
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > EXEC_COMMAND_MAX_BYTES:
            raise ValueError(
                f"command is {size} bytes, over the {EXEC_COMMAND_MAX_BYTES}-byte limit "
                "(write a script into the workspace and run that)"
            )
        return value

    def timeout_s(self) -> float | None:
        if self.timeout is not None and self.timeout > 1000:
            return self.timeout / 1000
        return self.timeout


# ---------------------------------------------------------------- rows


class AgentRecord(BaseModel):
    id: str
    name: str
    tenant_id: str = DEFAULT_TENANT
    version: int = 1
    path: str
    created_at: datetime
    updated_at: datetime

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "tenantId": self.tenant_id,
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
    # JSON as validated at the edge (models.SessionCreate), snake_case keys.
    mcp_servers: dict[str, dict[str, Any]] | None = None
    betas: list[str] | None = None
    subagents: dict[str, dict[str, Any]] | None = None
    initial_agent: str | None = None
    effort: str | None = None
    thinking: dict[str, Any] | None = None
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
