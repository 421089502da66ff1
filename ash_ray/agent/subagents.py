"""Subagents: the ``Task`` tool, and the main thread run as one (``initialAgent``).

A subagent (``.claude/agents/<name>.md`` or the session's ``subagents``) starts with
its own empty conversation, WITHOUT the parent's, and its body (``prompt``) as its
system prompt. It gets the tools its ``tools`` list names (every tool of the parent
when absent), never ``Task`` itself, the parent's permission mode and the MCP servers,
hooks and todo list of the session. Its messages and tool events are emitted with
``parent_tool_use_id`` set to the Task call; its usage and cost are added to the
parent turn's; its final text is the Task result. Its own ``model``, ``thinking`` and
``effort`` win over the parent turn's, which it inherits otherwise (with ``betas``).

``initialAgent`` (Claude Code's ``--agent``): the session's main thread runs as a
subagent definition (:func:`main_thread`): its body is the system prompt instead of
``CLAUDE.md``, its ``tools`` / ``disallowedTools`` narrow the turn's tools, and its
``model``, ``thinking`` and ``effort`` apply where the message and the session set none.
The session's own ``systemPrompt`` still wins, as it does over ``CLAUDE.md``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any

from ash_ray.agent.file_tools import ToolFailure
from ash_ray.agent.permissions import Rule
from ash_ray.agent.spec import AgentSpec, SubagentDef, tool_list
from ash_ray.errors import InvalidInput
from ash_ray.models import Usage

if TYPE_CHECKING:
    from ash_ray.agent.messages import TurnOptions
    from ash_ray.agent.tools import ToolContext

# Claude Code's aliases in a subagent's ``model`` front matter.
MODEL_ALIASES = {
    "sonnet": "claude-sonnet-4-5",
    "opus": "claude-opus-4-1",
    "haiku": "claude-haiku-4-5",
}

TASK_DESCRIPTION = (
    "Launch a subagent to handle a task on its own: it starts without this conversation, "
    "so the prompt must say everything it needs; its final answer comes back as the "
    "result. subagent_type is one of:\n"
)


def session_subagents(raw: Any) -> tuple[SubagentDef, ...]:
    """The session's ``subagents`` ({name: {description, prompt, tools, model}})."""
    if not isinstance(raw, dict):
        return ()
    out = []
    for name, item in raw.items():
        if not isinstance(item, dict):
            continue
        model, thinking, effort = item.get("model"), item.get("thinking"), item.get("effort")
        out.append(
            SubagentDef(
                name=str(name),
                description=str(item.get("description") or ""),
                prompt=str(item.get("prompt") or item.get("systemPrompt") or ""),
                tools=tool_list(item.get("tools")),
                model=str(model) if model else None,
                disallowed_tools=tool_list(
                    item.get("disallowed_tools") or item.get("disallowedTools")
                )
                or (),
                thinking=thinking if isinstance(thinking, dict) else None,
                effort=str(effort) if effort else None,
            )
        )
    return tuple(out)


def all_subagents(spec: AgentSpec, raw: Any) -> tuple[SubagentDef, ...]:
    """The folder's subagents and the session's; a session entry of the same name wins."""
    extra = session_subagents(raw)
    names = {s.name for s in extra}
    return (*[s for s in spec.subagents if s.name not in names], *extra)


def require_initial_agent(spec: AgentSpec, raw_subagents: Any, name: str | None) -> None:
    """InvalidInput (a 400) naming ``name`` when no subagent of the session has it."""
    if name is None:
        return
    known = [s.name for s in all_subagents(spec, raw_subagents)]
    if name not in known:
        listed = ", ".join(known) or "none"
        raise InvalidInput(
            f"initialAgent {name!r} is no subagent of agent {spec.name!r} "
            f"(.claude/agents/ or the session's subagents); known: {listed}"
        )


def _narrowed(allowed: Any, sub_tools: tuple[str, ...] | None) -> list[str] | None:
    """The session's allowedTools narrowed to the tools a definition lists."""
    if sub_tools is None:
        return list(allowed) if allowed is not None else None
    if allowed is None:
        return list(sub_tools)
    return [entry for entry in allowed if Rule.parse(entry).tool in sub_tools]


def main_thread(options: TurnOptions, sub: SubagentDef, agent_model: str) -> TurnOptions:
    """The turn's options when the main thread runs as ``sub`` (module doc)."""
    return dataclasses.replace(
        options,
        model=options.model or model_of(sub, agent_model),
        system_prompt=options.system_prompt
        or sub.prompt
        or f"You are the {sub.name} agent. {sub.description}",
        allowed_tools=_narrowed(options.allowed_tools, sub.tools),
        disallowed_tools=[*(options.disallowed_tools or ()), *sub.disallowed_tools],
        thinking=options.thinking or sub.thinking,
        effort=options.effort or sub.effort,
    )


def model_of(sub: SubagentDef, parent_model: str) -> str:
    """A subagent's model: the parent's for none or ``inherit``, aliases expanded."""
    if not sub.model or sub.model == "inherit":
        return parent_model
    return MODEL_ALIASES.get(sub.model, sub.model)


async def run_task(ctx: ToolContext, args: dict[str, Any]) -> str:
    """Run the subagent named by ``subagent_type`` on ``prompt`` (module doc)."""
    from ash_ray.agent.loop import AgentLoop
    from ash_ray.agent.messages import TurnOptions

    turn = ctx.state  # the parent's ToolTurn
    if turn is None:
        raise ToolFailure("Task is not available here")
    session = turn.session
    name = str(args["subagent_type"])
    sub = session.subagent(name)
    if sub is None:
        known = ", ".join(s.name for s in session.subagents) or "none"
        raise ToolFailure(f"unknown subagent_type {name!r}; available: {known}")
    spec = dataclasses.replace(
        ctx.spec,
        system_prompt=sub.prompt or f"You are the {sub.name} subagent. {sub.description}",
        model=model_of(sub, turn.model),
    )
    loop = AgentLoop(
        session.client,
        spec,
        ctx.sandbox,
        session.settings,
        session_id=session.session_id,
        tools=session,
    )
    allowed = [t for t in sub.tools if t != "Task"] if sub.tools is not None else None
    parent = turn.options
    options = TurnOptions(
        model=spec.model,
        allowed_tools=allowed,
        disallowed_tools=["Task", *sub.disallowed_tools],
        permission_mode=turn.policy.mode,
        # The session's, so that this nested turn keeps the parent's subagent list.
        subagents=parent.subagents,
        mcp_servers=parent.mcp_servers,
        thinking=sub.thinking or parent.thinking,
        effort=sub.effort or parent.effort,
        betas=parent.betas,
    )
    final, usage, cost = "", Usage(), 0.0
    async for event in loop.run_turn([], str(args["prompt"]), options, asyncio.Event()):
        if event.type == "turn_complete":
            continue
        if event.data.get("type") == "result":
            final = str(event.data.get("result") or "")
            usage = Usage.model_validate(event.data.get("usage") or {})
            cost = float(event.data.get("total_cost_usd") or 0.0)
            if event.data.get("is_error"):
                final = final or f"the subagent stopped: {event.data.get('subtype')}"
            continue
        if ctx.emit is not None:
            ctx.emit(event.type, {**event.data, "parent_tool_use_id": ctx.tool_use_id})
    turn.add_usage(usage, cost)
    return final or "(the subagent gave no answer)"
