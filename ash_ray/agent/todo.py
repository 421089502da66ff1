"""TodoWrite: the session's task list, replaced whole on each call, and its ``todo`` event.

The list lives in the session's :class:`~ash_ray.agent.toolbox.AgentTools` (kept across
turns); every change is also a ``todo`` event ``{"todos": [...]}`` on the stream and in
the timeline, so a client can show it.

No extra state is persisted: the list is the input of the last TodoWrite call that
succeeded, and the conversation the session stores (its full history, compactions
included) holds every call. A cold resume finds it there (:func:`last_todos`); a
compaction, which takes those calls out of the model's view, puts the list into the
summary (:func:`todos_note`), so the model still sees it afterwards.
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


def last_todos(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The list the last successful TodoWrite call of ``history`` left ([] if none)."""
    failed = {
        b.get("tool_use_id")
        for m in history
        if m.get("role") == "user" and isinstance(m.get("content"), list)
        for b in m["content"]
        if isinstance(b, dict) and b.get("type") == "tool_result" and b.get("is_error")
    }
    for message in reversed(history):
        content = message.get("content")
        if message.get("role") != "assistant" or not isinstance(content, list):
            continue
        for block in reversed(content):
            if (
                isinstance(block, dict)
                and block.get("type") == "tool_use"
                and block.get("name") == "TodoWrite"
                and block.get("id") not in failed
            ):
                try:
                    return _clean((block.get("input") or {}).get("todos"))
                except ToolFailure:
                    continue
    return []


def todos_note(todos: list[dict[str, Any]]) -> str:
    """The list as text for a compaction summary ("" when empty)."""
    if not todos:
        return ""
    lines = "\n".join(f"- [{t['status']}] {t['content']}" for t in todos)
    return f"\n\nThe todo list (TodoWrite) at this point:\n{lines}"


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
