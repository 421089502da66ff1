"""The agent loop and its tools: pure asyncio, no Ray, no HTTP.

:func:`load_agent` reads an agent folder into an :class:`AgentSpec`;
:class:`AgentLoop` runs turns against the Messages API with the tools of
:mod:`ash_ray.agent.tools`, filtered by :mod:`ash_ray.agent.permissions`.
"""

from ash_ray.agent.compact import CompactResult, context_of
from ash_ray.agent.loop import AgentLoop
from ash_ray.agent.messages import AgentEvent, TurnOptions
from ash_ray.agent.permissions import PermissionPolicy, PermissionRules, Rule
from ash_ray.agent.pricing import cost_usd
from ash_ray.agent.spec import AgentSpec, Skill, load_agent
from ash_ray.agent.tools import BUILTIN_TOOLS, Tool, ToolContext, ToolResult, run_tool

__all__ = [
    "BUILTIN_TOOLS",
    "AgentEvent",
    "AgentLoop",
    "AgentSpec",
    "CompactResult",
    "PermissionPolicy",
    "PermissionRules",
    "Rule",
    "Skill",
    "Tool",
    "ToolContext",
    "ToolResult",
    "TurnOptions",
    "context_of",
    "cost_usd",
    "load_agent",
    "run_tool",
]
