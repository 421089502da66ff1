"""Prompt-cache breakpoints, placed as Claude Code places them.

The API caches a request's prefix (tools, then system, then messages) up to each block
marked ``cache_control``; a later request whose prefix matches reads it at a tenth of
the input price. At most four breakpoints per request, so the loop uses them on:

1. the last tool definition (the tools never change within a session),
2. the system prompt's agent part (its session part, the working directory, follows:
   so all sessions of an agent share tools + agent prompt in the cache),
3. the message two before the last: the last message of the previous model call
   (in a tool loop, and at the start of the next turn). The API only looks back about
   20 blocks from a breakpoint for an earlier cache entry; marking the exact prefix the
   previous call wrote makes the read certain even after a reply with many tool calls,
4. the last message, so that the next call can read everything up to here.

The conversation itself is never changed: the marks go on copies, so stored messages
stay free of them and never pile up past the limit.
"""

from __future__ import annotations

from typing import Any

MAX_BREAKPOINTS = 4
EPHEMERAL: dict[str, str] = {"type": "ephemeral"}

# Thinking blocks cannot carry cache_control (they are cached as part of their turn),
# nor can empty text blocks.
_UNMARKABLE = {"thinking", "redacted_thinking"}


def _markable(block: Any) -> bool:
    if not isinstance(block, dict) or block.get("type") in _UNMARKABLE:
        return False
    return not (block.get("type") == "text" and not block.get("text"))


def _marked_message(message: dict[str, Any]) -> dict[str, Any] | None:
    """A copy of ``message`` with its last markable block marked, or None if none is."""
    content = message.get("content")
    if isinstance(content, str):
        if not content:
            return None
        return {
            **message,
            "content": [{"type": "text", "text": content, "cache_control": EPHEMERAL}],
        }
    if not isinstance(content, list):
        return None
    for i in range(len(content) - 1, -1, -1):
        if _markable(content[i]):
            blocks = list(content)
            blocks[i] = {**content[i], "cache_control": EPHEMERAL}
            return {**message, "content": blocks}
    return None


def mark_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool definitions with a breakpoint on the last one (breakpoint 1)."""
    if not tools:
        return tools
    return [*tools[:-1], {**tools[-1], "cache_control": EPHEMERAL}]


def mark_system(shared: str, *rest: str) -> list[dict[str, Any]]:
    """The system prompt as text blocks, a breakpoint after the ``shared`` one (breakpoint 2).

    ``rest`` (per-session text) follows uncached on its own; the message breakpoints
    cover it.
    """
    return [
        {"type": "text", "text": shared, "cache_control": EPHEMERAL},
        *({"type": "text", "text": text} for text in rest if text),
    ]


def mark_messages(messages: list[dict[str, Any]], budget: int = 2) -> list[dict[str, Any]]:
    """A copy of ``messages`` with breakpoints on the last message and the one two before.

    ``budget`` is how many breakpoints are left after the tools and the system prompt.
    """
    marked = list(messages)
    for index in (len(messages) - 1, len(messages) - 3)[: max(0, budget)]:
        if index < 0:
            continue
        copy = _marked_message(messages[index])
        if copy is not None:
            marked[index] = copy
    return marked


def count_breakpoints(params: dict[str, Any], messages: list[dict[str, Any]]) -> int:
    """How many cache_control marks a request carries (for tests and sanity checks)."""
    blocks: list[Any] = list(params.get("tools") or [])
    system = params.get("system")
    if isinstance(system, list):
        blocks += system
    for message in messages:
        if isinstance(message.get("content"), list):
            blocks += message["content"]
    return sum(1 for b in blocks if isinstance(b, dict) and b.get("cache_control"))
