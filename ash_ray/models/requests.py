"""Request bodies (HTTP JSON, camelCase like Ash), validated at the edge; the pipeline API
validates with them too."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from ash_ray.content import MAX_BLOCKS, parse_blocks
from ash_ray.models.base import AGENT_NAME_RE, ENV_NAME_RE, Wire

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
