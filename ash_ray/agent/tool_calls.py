"""Running one reply's tool calls: read-only runs together, everything else alone.

Results go back in the order the model asked for them, whatever order the tools finish
in; an interrupt turns a call that has not finished into an error result.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from ash_ray.agent.messages import AgentEvent
from ash_ray.agent.stream import first
from ash_ray.agent.toolbox import ToolTurn
from ash_ray.agent.tools import Tool, ToolResult


async def run_tools(
    calls: ToolTurn,
    tools: dict[str, Tool],
    tool_uses: list[dict[str, Any]],
    interrupt: asyncio.Event,
    results: list[dict[str, Any]],
) -> AsyncIterator[AgentEvent]:
    """Run a reply's tool calls, appending tool_result blocks to ``results`` in order.

    Consecutive read-only calls run concurrently; any other call runs alone.
    """
    for batch in _batches(tool_uses, tools):
        for block in batch:
            yield AgentEvent(
                "tool_use", {"id": block["id"], "name": block["name"], "input": block["input"]}
            )
        work = asyncio.gather(*(_dispatch(calls, b, interrupt) for b in batch))
        # agenttools: todo, mcp_status and a subagent's messages stream while tools run
        async for event in calls.stream_until(work):
            yield event
        outcomes = work.result()
        for block, outcome in zip(batch, outcomes, strict=True):
            item = {
                "tool_use_id": block["id"],
                "content": outcome.content,
                "is_error": outcome.is_error,
            }
            results.append({"type": "tool_result", **item})
            yield AgentEvent("tool_result", item)


async def _dispatch(calls: ToolTurn, block: dict[str, Any], interrupt: asyncio.Event) -> ToolResult:
    """One tool call: checks, then the tool; every refusal is an error result."""
    if interrupt.is_set():
        return ToolResult("Interrupted by the user before the tool ran.", True)
    # agenttools: unknown tool, plan mode, PreToolUse hooks, rules, the tool, PostToolUse
    task = asyncio.ensure_future(calls.call(block))
    try:
        if await first(task, interrupt):
            return task.result()
        return ToolResult("Interrupted by the user while the tool ran.", True)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _batches(tool_uses: list[dict[str, Any]], tools: dict[str, Tool]) -> list[list[dict[str, Any]]]:
    """Tool calls grouped: runs of read-only calls together, every other call alone."""
    batches: list[list[dict[str, Any]]] = []
    after_read_only = False
    for block in tool_uses:
        tool = tools.get(block["name"])
        read_only = tool is not None and tool.read_only
        if read_only and after_read_only:
            batches[-1].append(block)
        else:
            batches.append([block])
        after_read_only = read_only
    return batches
