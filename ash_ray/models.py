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

from ash_ray.content import MAX_BLOCKS, parse_blocks

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
REFUSED_UNTIL_IMPLEMENTED: tuple[str, ...] = ()


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
    # Used when this subagent runs (a Task call, or the main thread as initialAgent).
    thinking: ThinkingConfig | None = None
    effort: Effort | None = None


McpServers = Annotated[dict[Name, McpServer], Field(max_length=LIST_MAX)]
Subagents = Annotated[dict[Name, Subagent], Field(max_length=LIST_MAX)]
Betas = Annotated[list[Name], Field(max_length=LIST_MAX)]
ExtraEnv = Annotated[dict[str, EnvValue], Field(max_length=LIST_MAX)]


def _check_env_names(value: dict[str, str] | None) -> dict[str, str] | None:
    for key in value or {}:
        if not ENV_NAME_RE.match(key):
            raise ValueError(f"extraEnv name {key[:80]!r} is not a valid variable name")
    return value


class AgentFileIn(Wire):
    """One uploaded file: a path relative to the agent folder and base64 content."""

    path: PathText
    content: str = Field(description="The file's bytes, base64.")


AgentFiles = Annotated[list[AgentFileIn], Field(max_length=100_000)]


class AgentCreate(Wire):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    name: str = Field(
        pattern=AGENT_NAME_RE.pattern,
        description="Agent name: letters, digits, '.', '_' or '-' (at most 128).",
    )
    path: PathText | None = Field(
        None,
        description="Folder holding CLAUDE.md on the server (relative: under the data dir), "
        "read once; without it the agent is managed: its files come in `files`.",
    )
    system_prompt: Prompt | None = Field(None, description="Written as CLAUDE.md.")
    files: AgentFiles | None = None
    env: ExtraEnv | None = Field(None, description="Sandbox env of its sessions (redacted).")
    replace_files: bool = Field(
        False,
        description="ash-ray: `files` replace the agent's files instead of being written "
        "over them (`ash-ray deploy` mirrors a folder this way).",
    )

    _env_names = field_validator("env")(_check_env_names)


class AgentPatch(Wire):
    path: PathText | None = None
    system_prompt: Prompt | None = None
    env: ExtraEnv | None = None
    config: dict[str, Any] | None = None

    _env_names = field_validator("env")(_check_env_names)


class AgentFilesUpload(Wire):
    files: AgentFiles = Field(min_length=1)


class AgentVersionPatch(Wire):
    name: Name | None = None
    system_prompt: Prompt | None = None
    release_notes: Annotated[str, StringConstraints(max_length=10_000)] | None = None
    knowledge_files: Annotated[list[PathText], Field(max_length=LIST_MAX)] | None = None


class AgentVersionCreate(AgentVersionPatch):
    clone_from: int | Annotated[str, StringConstraints(max_length=64)] | None = None


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
    initial_agent: Name | None = Field(
        None,
        description="Run the main thread as this subagent (of .claude/agents/ or subagents): "
        "its prompt, tools, model, thinking and effort.",
    )
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

    content: Annotated[str, StringConstraints(min_length=1, max_length=1_000_000)] | list[Any] = (
        Field(
            description=f"A prompt, or up to {MAX_BLOCKS} blocks: text, image (base64 or URL), "
            "document (PDF, base64)."
        )
    )
    include_partial_messages: bool = False
    model: Name | None = None
    max_turns: int | None = Field(None, ge=1, le=10_000)
    max_budget_usd: float | None = Field(None, gt=0, le=1_000_000, allow_inf_nan=False)
    effort: Effort | None = None
    thinking: ThinkingConfig | None = None
    output_format: dict[str, Any] | None = None
    if_busy: Literal["queue", "reject", "interrupt"] = Field(
        "reject",
        description="While a turn runs: `reject` (409), `queue` (runs as its own turn after "
        "the ones before it; the stream starts when its turn starts) or `interrupt` (stop "
        "the running turn, then run this one).",
    )

    @field_validator("content")
    @classmethod
    def _blocks(cls, value: str | list[Any]) -> str | list[Any]:
        return value if isinstance(value, str) else parse_blocks(value)

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
