"""The agent loop and its tools: pure asyncio, no Ray, no HTTP.

:func:`load_agent` reads an agent folder into an :class:`AgentSpec`;
:class:`AgentLoop` runs turns against the Messages API with the tools of
:mod:`ash_ray.agent.tools`, filtered by :mod:`ash_ray.agent.permissions`.

The names below load with their module on first use: the registry (and so every process
that resolves its handle: Ray imports an actor's class module for that) reads agent
folders and bundles, and must not pay for the loop's ``anthropic`` SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names, for type checkers (``as``: re-exported)
    from ash_ray.agent.compact import CompactResult as CompactResult
    from ash_ray.agent.compact import context_of as context_of
    from ash_ray.agent.loop import AgentLoop as AgentLoop
    from ash_ray.agent.messages import AgentEvent as AgentEvent
    from ash_ray.agent.messages import TurnOptions as TurnOptions
    from ash_ray.agent.permissions import PermissionPolicy as PermissionPolicy
    from ash_ray.agent.permissions import PermissionRules as PermissionRules
    from ash_ray.agent.permissions import Rule as Rule
    from ash_ray.agent.pricing import cost_usd as cost_usd
    from ash_ray.agent.spec import AgentSpec as AgentSpec
    from ash_ray.agent.spec import Skill as Skill
    from ash_ray.agent.spec import load_agent as load_agent
    from ash_ray.agent.tools import BUILTIN_TOOLS as BUILTIN_TOOLS
    from ash_ray.agent.tools import Tool as Tool
    from ash_ray.agent.tools import ToolContext as ToolContext
    from ash_ray.agent.tools import ToolResult as ToolResult
    from ash_ray.agent.tools import run_tool as run_tool

_HOMES = {
    "compact": ("CompactResult", "context_of"),
    "loop": ("AgentLoop",),
    "messages": ("AgentEvent", "TurnOptions"),
    "permissions": ("PermissionPolicy", "PermissionRules", "Rule"),
    "pricing": ("cost_usd",),
    "spec": ("AgentSpec", "Skill", "load_agent"),
    "tools": ("BUILTIN_TOOLS", "Tool", "ToolContext", "ToolResult", "run_tool"),
}
_HOME = {name: module for module, names in _HOMES.items() for name in names}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
