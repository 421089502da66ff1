"""TodoWrite: the session's task list, replaced whole on each call, and its ``todo`` event.

The list lives in the session's :class:`~ash_ray.agent.toolbox.AgentTools` (kept across
turns); every change is also a ``todo`` event ``{"todos": [...]}`` on the stream and in
the timeline, so a client can show it and a resumed session can find it again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ash_ray.agent.file_tools import ToolFailure

if TYPE_CHECKING:
    from ash_ray.agent.tools import ToolContext

STATUSES = ("pending", "in_progress", "completed")
TODOS_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "content": {"type": "string", "minLength": 1},
            "status": {"type": "string", "enum": list(STATUSES)},
            "activeForm": {"type": "string", "minLength": 1},
            "id": {"type": "string"},
            "priority": {"type": "string", "enum": ["high", "medium", "low"]},
        },
        "required": ["content", "status"],
        "additionalProperties": False,
    },
}


def _clean(todos: Any) -> list[dict[str, Any]]:
    if not isinstance(todos, list):
        raise ToolFailure("todos must be a list of {content, status, activeForm}")
    out = []
    for number, item in enumerate(todos, start=1):
        if not isinstance(item, dict) or not str(item.get("content") or "").strip():
            raise ToolFailure(f"todo {number} needs a non-empty content")
        if item.get("status") not in STATUSES:
            raise ToolFailure(f"todo {number}: status must be one of {', '.join(STATUSES)}")
        keep = ("content", "status", "activeForm", "id", "priority")
        out.append({k: item[k] for k in keep if k in item})
    return out


async def todo_write(ctx: ToolContext, args: dict[str, Any]) -> str:
    """Replace the session's task list and announce it."""
    todos = _clean(args["todos"])
    if ctx.state is not None:
        ctx.state.session.todos = todos  # state is the ToolTurn; the list is per session
    if ctx.emit is not None:
        ctx.emit("todo", {"todos": todos})
    return (
        "Todos have been modified successfully. Ensure that you continue to use the todo "
        "list to track your progress. Please proceed with the current tasks if applicable"
    )
