"""Built-in tools, named and shaped as Claude Code names them, and their dispatch.

``Bash`` runs through :meth:`Sandbox.run`; the file tools (:mod:`.file_tools`,
:mod:`.edit_tools`) run in a worker thread and confine every path with
``sandbox.resolve``; ``Skill`` returns a skill's text; ``WebFetch`` is in :mod:`.web`,
``TodoWrite`` in :mod:`.todo`, ``Task`` in :mod:`.subagents`, MCP tools in :mod:`.mcp`.
:func:`run_tool` never raises (except cancellation): a failure is a
:class:`ToolResult` with ``is_error=True`` that the model can read and react to.

``Tool.read_only`` marks tools that change nothing (the loop may run several at once,
``plan`` mode allows only them).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ash_ray.agent import edit_tools, file_tools, todo, web
from ash_ray.agent.file_tools import FileContext, ToolFailure
from ash_ray.agent.permissions import PermissionPolicy
from ash_ray.agent.spec import AgentSpec
from ash_ray.config import Settings
from ash_ray.errors import AshError
from ash_ray.sandbox import Sandbox

logger = logging.getLogger(__name__)

MAX_RESULT_CHARS = 30_000
MAX_BASH_TIMEOUT_MS = 600_000


Content = str | list[dict[str, Any]]


@dataclass(frozen=True)
class ToolResult:
    """What goes back to the model in a tool_result block (text, or content blocks)."""

    content: Content
    is_error: bool = False


@dataclass(frozen=True)
class ToolContext:
    """Everything a tool call may use.

    ``state`` is the turn's :class:`~ash_ray.agent.toolbox.ToolTurn` (its ``session``
    holds the todos, MCP servers and subagents), ``emit`` queues an extra event of the
    turn (``todo``,
    ``mcp_status``, a subagent's messages), ``tool_use_id`` names the running call.
    """

    sandbox: Sandbox
    spec: AgentSpec
    policy: PermissionPolicy
    default_timeout_s: float
    max_write_bytes: int
    settings: Settings | None = None
    state: Any = None
    tool_use_id: str = ""
    emit: Callable[[str, dict[str, Any]], None] | None = None


Handler = Callable[[ToolContext, dict[str, Any]], Awaitable[Content]]


@dataclass(frozen=True)
class Tool:
    """A tool definition as the Messages API takes it, plus its handler.

    ``read_only`` tools change nothing, so the loop runs several of them from one reply
    concurrently (an MCP tool sets it from its ``readOnlyHint`` annotation).
    """

    name: str
    description: str
    input_schema: dict[str, Any]
    handler: Handler
    read_only: bool = False

    def api(self) -> dict[str, Any]:
        """The ``tools`` entry of a Messages API request."""
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
        }


def _schema(required: list[str], **props: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }


_STR = {"type": "string"}


def _clip(text: str) -> str:
    if len(text) <= MAX_RESULT_CHARS:
        return text
    half = MAX_RESULT_CHARS // 2
    return f"{text[:half]}\n... [{len(text) - 2 * half} characters truncated] ...\n{text[-half:]}"


async def _bash(ctx: ToolContext, args: dict[str, Any]) -> str:
    timeout_ms = args.get("timeout")
    timeout_s = ctx.default_timeout_s
    if timeout_ms:
        ceiling = max(MAX_BASH_TIMEOUT_MS / 1000, ctx.default_timeout_s)
        timeout_s = min(max(float(timeout_ms) / 1000, 1.0), ceiling)
    result = await ctx.sandbox.run(str(args["command"]), timeout_s=timeout_s)
    parts = [result.stdout.rstrip("\n")] if result.stdout else []
    if result.stderr:
        parts.append(result.stderr.rstrip("\n"))
    if result.truncated:
        parts.append("[output truncated: more than 1 MiB]")
    if result.timed_out:
        parts.append(f"Command timed out after {timeout_s:g}s and was killed")
    elif result.exit_code != 0:
        parts.append(f"Exit code {result.exit_code}")
    text = "\n".join(parts) or "(no output)"
    if not result.ok:
        raise ToolFailure(text)
    return text


async def _skill(ctx: ToolContext, args: dict[str, Any]) -> str:
    name = str(args["skill"])
    skill = ctx.spec.skill(name)
    if skill is None:
        known = ", ".join(s.name for s in ctx.spec.skills) or "none"
        raise ToolFailure(f"unknown skill {name!r}; available: {known}")
    where = ctx.sandbox.workspace / ".claude" / "skills" / skill.path.name
    return f"Base directory for this skill: {where}\n\n{skill.body}"


def _threaded(func: Callable[[FileContext, dict[str, Any]], Content]) -> Handler:
    async def handler(ctx: ToolContext, args: dict[str, Any]) -> Content:
        fctx = FileContext(ctx.sandbox, ctx.policy, ctx.max_write_bytes)
        return await asyncio.to_thread(func, fctx, args)

    return handler


BUILTIN_TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(
            "Bash",
            "Run a bash command in the session workspace (its working directory) and return "
            "stdout, stderr and the exit code. Each call is a fresh shell; background "
            "processes are killed when the command ends. timeout is in milliseconds.",
            _schema(
                ["command"],
                command=_STR,
                timeout={"type": "number", "description": "milliseconds, max 600000"},
                description=_STR,
            ),
            _bash,
        ),
        Tool(
            "Read",
            "Read a text file, numbered like `cat -n`. offset is the first line (1-based), "
            "limit the number of lines (default 2000). Images (JPEG, PNG, GIF, WebP) and "
            "PDFs are shown to you as they are.",
            _schema(
                ["file_path"], file_path=_STR, offset={"type": "integer"}, limit={"type": "integer"}
            ),
            _threaded(file_tools.read),
            read_only=True,
        ),
        Tool(
            "Write",
            "Create or overwrite a file with the given content.",
            _schema(["file_path", "content"], file_path=_STR, content=_STR),
            _threaded(file_tools.write),
        ),
        Tool(
            "Edit",
            "Replace old_string with new_string in a file. old_string must occur exactly "
            "once unless replace_all is true.",
            _schema(
                ["file_path", "old_string", "new_string"],
                file_path=_STR,
                old_string=_STR,
                new_string=_STR,
                replace_all={"type": "boolean", "default": False},
            ),
            _threaded(file_tools.edit),
        ),
        Tool(
            "Glob",
            "Find files whose path matches a glob pattern such as **/*.py, newest first.",
            _schema(["pattern"], pattern=_STR, path=_STR),
            _threaded(file_tools.glob),
            read_only=True,
        ),
        Tool(
            "Grep",
            "Search file contents with a regular expression (Python syntax). glob filters "
            "files (e.g. *.py); output_mode is files_with_matches (default), content or count.",
            _schema(
                ["pattern"],
                pattern=_STR,
                path=_STR,
                glob=_STR,
                output_mode={"type": "string", "enum": ["content", "files_with_matches", "count"]},
                **{"-i": {"type": "boolean"}},
                head_limit={"type": "integer"},
            ),
            _threaded(file_tools.grep),
            read_only=True,
        ),
        Tool(
            "LS",
            "List a directory of the workspace.",
            _schema([], path=_STR, ignore={"type": "array", "items": _STR}),
            _threaded(file_tools.ls),
            read_only=True,
        ),
        Tool(
            "MultiEdit",
            "Make several find-and-replace edits to one file in one call. Edits apply in "
            "order, each to the result of the previous one; if any fails, none is applied.",
            _schema(
                ["file_path", "edits"],
                file_path=_STR,
                edits={
                    "type": "array",
                    "minItems": 1,
                    "items": _schema(
                        ["old_string", "new_string"],
                        old_string=_STR,
                        new_string=_STR,
                        replace_all={"type": "boolean", "default": False},
                    ),
                },
            ),
            _threaded(edit_tools.multi_edit),
        ),
        Tool(
            "NotebookEdit",
            "Replace, insert or delete one cell of a Jupyter notebook (.ipynb). cell_id is "
            "the cell's id (insert: the new cell goes after it, or first without one).",
            _schema(
                ["notebook_path", "new_source"],
                notebook_path=_STR,
                cell_id=_STR,
                new_source=_STR,
                cell_type={"type": "string", "enum": ["code", "markdown"]},
                edit_mode={"type": "string", "enum": ["replace", "insert", "delete"]},
            ),
            _threaded(edit_tools.notebook_edit),
        ),
        Tool(
            "WebFetch",
            "Fetch a URL and return its content (HTML converted to markdown). prompt says "
            "what you are looking for in the page.",
            _schema(["url", "prompt"], url={"type": "string", "format": "uri"}, prompt=_STR),
            web.web_fetch,
            read_only=True,
        ),
        Tool(
            "TodoWrite",
            "Create and update the task list of this session; send the whole list each time. "
            "Use it for multi-step work: one task in_progress at a time, mark tasks "
            "completed as soon as they are done.",
            _schema(["todos"], todos=todo.TODOS_SCHEMA),
            todo.todo_write,
        ),
    )
}

SKILL_TOOL = Tool(
    "Skill",
    "Load a skill by name: returns its instructions. Use it when a listed skill fits the task.",
    _schema(["skill"], skill=_STR),
    _skill,
    read_only=True,
)


def available_tools(spec: AgentSpec) -> list[Tool]:
    """The built-in tools, plus Skill when the agent has skills."""
    tools = list(BUILTIN_TOOLS.values())
    if spec.skills:
        tools.append(SKILL_TOOL)
    return tools


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int, float),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def _validate(tool: Tool, args: Mapping[str, Any]) -> str | None:
    schema = tool.input_schema
    missing = [key for key in schema.get("required") or () if key not in args]
    if missing:
        return f"missing required parameter(s): {', '.join(missing)}"
    properties = schema.get("properties") or {}
    for key, value in args.items():
        prop = properties.get(key)
        if not isinstance(prop, dict):
            # Models trained on Claude Code send extras (run_in_background, -n...): ignore.
            continue
        wanted = _TYPES.get(str(prop.get("type", "")), (object,))
        if value is not None and (
            not isinstance(value, wanted) or (isinstance(value, bool) and bool not in wanted)
        ):
            return f"parameter {key!r} must be of type {prop['type']}"
    return None


async def run_tool(ctx: ToolContext, tool: Tool, args: Any) -> ToolResult:
    """Run one tool call; every failure comes back as an error result."""
    if not isinstance(args, dict):
        return ToolResult(
            f"<tool_use_error>{tool.name} input must be an object</tool_use_error>", True
        )
    problem = _validate(tool, args)
    if problem:
        return ToolResult(f"<tool_use_error>InputValidationError: {problem}</tool_use_error>", True)
    try:
        content = await tool.handler(ctx, args)
        return ToolResult(_clip(content) if isinstance(content, str) else content)
    except ToolFailure as exc:
        return ToolResult(_clip(str(exc)), True)
    except AshError as exc:
        return ToolResult(str(exc), True)
    except (OSError, UnicodeError, ValueError) as exc:
        return ToolResult(f"{tool.name} failed: {exc}", True)
    except Exception as exc:
        logger.exception("tool %s crashed", tool.name)
        return ToolResult(f"{tool.name} failed unexpectedly: {type(exc).__name__}: {exc}", True)
