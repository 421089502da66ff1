"""The tools of a session and of each of its turns: MCP, modes, hooks, todos, subagents.

:class:`AgentTools` lives as long as the session's loop: the todo list, the MCP
servers (started lazily, :meth:`AgentTools.aclose` on pause/stop/end) and the
subagents. :meth:`AgentTools.begin_turn` makes a :class:`ToolTurn`: the tool set of one
turn (built-ins, Skill, Task, MCP tools, filtered by the session's tool lists), its
permission mode and the call path of every tool (:meth:`ToolTurn.call`):

1. unknown tool -> error; 2. ``plan`` mode refuses tools that are not read-only
(``TodoWrite``, ``Task`` and ``Skill`` stay allowed); 3. ``PreToolUse`` hooks (exit 2
or a deny decision blocks, with the hook's reason); 4. permission rules (skipped in
``bypassPermissions``); 5. the tool; 6. ``PostToolUse`` hooks (a block decision adds
its reason to the result). Events that tools raise (``todo``, ``mcp_status``, a
subagent's messages) queue on the turn; the loop yields them (:meth:`ToolTurn.drain`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from ash_ray.agent import subagents, todo
from ash_ray.agent.hooks import HookOutcome, run_hooks
from ash_ray.agent.mcp import McpServers, merge_servers
from ash_ray.agent.messages import AgentEvent
from ash_ray.agent.permissions import PermissionPolicy
from ash_ray.agent.spec import AgentSpec, SubagentDef
from ash_ray.agent.tools import Tool, ToolContext, ToolResult, _schema, available_tools, run_tool
from ash_ray.agent.web import WEB_SEARCH_TOOL
from ash_ray.models import Usage

PLAN_ALLOWED = frozenset({"TodoWrite", "Task", "Skill"})
_MIB = 1024 * 1024


def _task_tool(subs: Sequence[SubagentDef]) -> Tool:
    listed = "\n".join(f"- {s.name}: {s.description}" for s in subs)
    return Tool(
        "Task",
        subagents.TASK_DESCRIPTION + listed,
        _schema(
            ["description", "prompt", "subagent_type"],
            description={"type": "string", "description": "3-5 word summary of the task"},
            prompt={"type": "string", "description": "the task for the subagent"},
            subagent_type={"type": "string", "enum": [s.name for s in subs]},
        ),
        subagents.run_task,
    )


class AgentTools:
    """Session-wide tool state (module doc)."""

    def __init__(self, client: Any, spec: AgentSpec, settings: Any, session_id: str | None):
        self.client = client
        self.spec = spec
        self.settings = settings
        self.session_id = session_id
        self.todos: list[dict[str, Any]] = []
        self._restored = False
        self.subagents: tuple[SubagentDef, ...] = spec.subagents
        self._mcp: McpServers | None = None
        self._mcp_config: dict[str, Any] | None = None

    def restore(self, history: list[dict[str, Any]]) -> None:
        """Take the todo list from the stored history, once (the first turn of a loop)."""
        if not self._restored:
            self._restored = True
            self.todos = todo.last_todos(history)

    def subagent(self, name: str) -> SubagentDef | None:
        return next((s for s in self.subagents if s.name == name), None)

    def main_agent(self, options: Any) -> SubagentDef | None:
        """The subagent the main thread runs as (``initial_agent``), if any.

        Updates the session's subagent list from ``options`` first. An initialAgent the
        registry accepted can vanish when the agent folder is redeployed: InvalidInput.
        """
        self.subagents = subagents.all_subagents(self.spec, options.subagents)
        name = options.initial_agent
        if name is None:
            return None
        subagents.require_initial_agent(self.spec, options.subagents, name)
        return self.subagent(name)

    async def begin_turn(
        self,
        sandbox: Any,
        options: Any,
        model: str,
        session_tag: Mapping[str, Any],
        extra_tools: Sequence[Tool] = (),
    ) -> ToolTurn:
        """The tools of one turn (``extra_tools`` too); starts or restarts MCP servers first."""
        mode = options.permission_mode or self.spec.permission_mode or "default"
        policy = PermissionPolicy(
            self.spec.permissions,
            allowed_tools=options.allowed_tools,
            disallowed_tools=options.disallowed_tools,
            mode="default" if mode == "permissionsByAgent" else mode,
        )
        self.subagents = subagents.all_subagents(self.spec, options.subagents)
        turn = ToolTurn(self, sandbox, policy, model, dict(session_tag), options)
        wanted = merge_servers(self.spec.mcp_servers, options.mcp_servers)
        if wanted != self._mcp_config:
            await self.aclose()
            self._mcp_config = wanted
            try:
                self._mcp = McpServers(wanted, self.settings) if wanted else None
            except ValueError as exc:
                turn.emit("mcp_status", {"action": "error", "error": str(exc)})
        if self._mcp is not None:
            await self._mcp.start(sandbox, turn.emit)
        every = [*available_tools(self.spec), *extra_tools]
        if self.subagents:
            every.append(_task_tool(self.subagents))
        if self._mcp is not None:
            every += self._mcp.tools()
        offered = set(policy.offered(t.name for t in every))
        turn.tools = {t.name: t for t in every if t.name in offered}
        return turn

    async def aclose(self) -> None:
        """Stop the MCP servers (the session pauses, stops or ends). Idempotent."""
        mcp, self._mcp, self._mcp_config = self._mcp, None, None
        if mcp is not None:
            await mcp.aclose()


class ToolTurn:
    """The tools, policy and queued events of one turn (module doc)."""

    def __init__(
        self,
        session: AgentTools,
        sandbox: Any,
        policy: PermissionPolicy,
        model: str,
        tag: dict[str, Any],
        options: Any,
    ) -> None:
        self.session = session
        self.sandbox = sandbox
        self.policy = policy
        self.model = model
        self.options = options  # the turn's TurnOptions (a Task subagent inherits some)
        self.tools: dict[str, Tool] = {}
        self.usage = Usage()
        self.cost = 0.0
        self._tag = tag
        self._events: list[AgentEvent] = []
        self._queued = asyncio.Event()
        settings = session.settings
        self.ctx = ToolContext(
            sandbox=sandbox,
            spec=session.spec,
            policy=policy,
            default_timeout_s=settings.sandbox_timeout_s,
            max_write_bytes=settings.sandbox_file_size_mb * _MIB,
            settings=settings,
            state=self,
            emit=self.emit,
        )

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        self._events.append(AgentEvent(kind, {**data, **self._tag}))
        self._queued.set()

    def drain(self) -> list[AgentEvent]:
        """Events queued since the last drain, oldest first."""
        events, self._events = self._events, []
        self._queued.clear()
        return events

    async def stream_until(self, work: asyncio.Future[Any]) -> AsyncIterator[AgentEvent]:
        """Yield queued events as they come (a subagent's, live) until ``work`` is done.

        ``work`` is cancelled if the caller stops listening (the turn was cancelled).
        """
        try:
            while not work.done():
                waiter = asyncio.ensure_future(self._queued.wait())
                try:
                    await asyncio.wait({work, waiter}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                for event in self.drain():
                    yield event
            for event in self.drain():
                yield event
        finally:
            if not work.done():
                work.cancel()

    def add_usage(self, usage: Usage, cost: float) -> None:
        self.usage, self.cost = self.usage.add(usage), self.cost + cost

    def take_usage(self) -> tuple[Usage, float]:
        """Usage of subagents since the last call (the loop adds it to the turn's)."""
        usage, cost = self.usage, self.cost
        self.usage, self.cost = Usage(), 0.0
        return usage, cost

    def server_tools(self) -> list[dict[str, Any]]:
        """Server-side tools for the request: web search, when offered."""
        settings = self.session.settings
        if not settings.web_search or not self.sandbox.network:
            return []
        return [dict(WEB_SEARCH_TOOL)] if self.policy.offered(["WebSearch"]) else []

    def _payload(self, event: str, **extra: Any) -> dict[str, Any]:
        return {
            "session_id": self.session.session_id or "",
            "transcript_path": "",
            "cwd": str(self.sandbox.workspace),
            "hook_event_name": event,
            "permission_mode": self.policy.mode,
            **extra,
        }

    async def _hooks(self, event: str, tool: str | None = None, **extra: Any) -> HookOutcome:
        matchers = self.session.spec.hooks.get(event, ())
        if not matchers:
            return HookOutcome()
        return await run_hooks(
            self.sandbox,
            matchers,
            self._payload(event, **extra),
            default_timeout_s=self.session.settings.hook_timeout_s,
            tool_name=tool,
        )

    async def prompt_hooks(self, prompt: str) -> tuple[str | None, list[str]]:
        """``UserPromptSubmit``: (why the prompt is blocked or None, context to add)."""
        outcome = await self._hooks("UserPromptSubmit", prompt=prompt)
        return (outcome.reason or "blocked by a hook") if outcome.blocked else None, outcome.context

    async def stop_hooks(self, active: bool) -> str | None:
        """``Stop``: the reason to keep going, or None to let the turn end."""
        outcome = await self._hooks("Stop", stop_hook_active=active)
        return (outcome.reason or "a Stop hook asked to continue") if outcome.blocked else None

    async def call(self, block: Mapping[str, Any]) -> ToolResult:
        """Run one tool_use block through modes, hooks and rules (module doc)."""
        name, args = str(block["name"]), block["input"]
        tool = self.tools.get(name)
        if tool is None:
            missing = f"<tool_use_error>No such tool available: {name}</tool_use_error>"
            return ToolResult(missing, True)
        if self.policy.mode == "plan" and not tool.read_only and name not in PLAN_ALLOWED:
            return ToolResult(
                f"Permission denied: {name} changes things, and this session is in plan mode "
                "(read-only tools only). Describe the plan instead.",
                True,
            )
        tool_input = args if isinstance(args, dict) else {}
        pre = await self._hooks("PreToolUse", name, tool_name=name, tool_input=tool_input)
        if pre.blocked:
            return ToolResult(f"PreToolUse hook blocked {name}: {pre.reason}", True)
        if not pre.allowed and (
            reason := self.policy.check(name, tool_input, self.sandbox.workspace)
        ):
            return ToolResult(reason, True)
        ctx = dataclasses.replace(self.ctx, tool_use_id=str(block.get("id", "")))
        outcome = await run_tool(ctx, tool, args)
        post = await self._hooks(
            "PostToolUse",
            name,
            tool_name=name,
            tool_input=tool_input,
            tool_response=outcome.content,
        )
        notes = ([post.reason] if post.blocked else []) + post.context
        if notes and isinstance(outcome.content, str):
            extra = "\n".join(f"[PostToolUse hook] {n}" for n in notes if n)
            return ToolResult(f"{outcome.content}\n\n{extra}", outcome.is_error)
        return outcome
