"""What clients read back, in Ash's shapes, from a session's numbered event log.

Every SSE event of a session is stored with its sequence number; two views are read
from them here, and the Messages-API conversation (what a cold resume reloads) stays
apart, untouched:

* ``GET .../messages``: the Claude Agent SDK messages of the ``message`` events (the
  prompt, assistant replies, tool results with ``tool_use_result``, results, system
  messages), each ``content`` the JSON text of the whole message, as Ash stores them.
  ``stream_event`` messages are live-only (they stay in the event log for re-attach).
* ``GET .../events``: the timeline, classified as Ash's ``classifyBridgeMessage`` does
  (``text``, ``tool_start``, ``reasoning``, ``tool_result``, ``turn_complete``,
  ``error``, ``lifecycle``, ``mcp_status``); one stored event may give several entries,
  all with its sequence number, and ``data`` names the stored event under ``event``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Literal

from ash_ray.models import EventRecord, iso

TimelineType = Literal[
    "text", "tool_start", "tool_result", "reasoning", "turn_complete", "error",
    "lifecycle", "mcp_status",
]  # fmt: skip
PAGE = 1000

Entry = tuple[str, dict[str, Any]]
ReadEvents = Callable[[int, int], Awaitable[list[EventRecord]]]


def _assistant(message: dict[str, Any]) -> Iterable[Entry]:
    for block in (message.get("message") or {}).get("content") or []:
        kind = block.get("type")
        if kind == "text":
            yield "text", {"text": block.get("text", "")}
        elif kind == "tool_use":
            tool = {"toolName": block.get("name"), "toolId": block.get("id")}
            yield "tool_start", {**tool, "input": block.get("input")}
        elif kind == "thinking":
            yield "reasoning", {"thinking": block.get("thinking", "")}


def classify(event: EventRecord) -> list[Entry]:
    """The timeline entries of one stored event (none for deltas, frames, prompts)."""
    data = event.data
    if event.type == "message":
        kind = data.get("type")
        if kind == "assistant":
            return list(_assistant(data))
        if kind == "user" and isinstance(data.get("tool_use_result"), dict):
            r = data["tool_use_result"]
            return [("tool_result", {
                "toolName": r.get("tool_name"), "toolId": r.get("tool_use_id"),
                "stdout": r.get("stdout"), "stderr": r.get("stderr"),
                "isError": bool(r.get("is_error")),
            })]  # fmt: skip
        if kind == "result":
            return [("turn_complete", {
                "numTurns": data.get("num_turns"), "result": data.get("result"),
                "subtype": data.get("subtype"), "isError": bool(data.get("is_error")),
            })]  # fmt: skip
        return []
    if event.type == "error":
        return [("error", {"error": data.get("error")})]
    if event.type in ("lifecycle", "mcp_status"):
        return [(event.type, dict(data))]
    if event.type == "compact":
        return [("lifecycle", {"action": "compacted", **data})]
    return []


def timeline_entry(session_id: str, event: EventRecord, n: int, entry: Entry) -> dict[str, Any]:
    kind, data = entry
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{session_id}/{event.seq}/{n}")),
        "sessionId": session_id,
        "type": kind,
        "sequence": event.seq,
        "createdAt": iso(event.created_at),
        "data": json.dumps({"event": event.type, **data}),
    }


def display_message(session_id: str, event: EventRecord) -> dict[str, Any] | None:
    """The ``GET .../messages`` item of a stored ``message`` event (None: not one)."""
    if event.type != "message" or event.data.get("type") == "stream_event":
        return None
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{session_id}/{event.seq}")),
        "sessionId": session_id,
        "role": "user" if event.data.get("type") == "user" else "assistant",
        "content": json.dumps(event.data),
        "sequence": event.seq,
        "createdAt": iso(event.created_at),
    }


async def _scan(read: ReadEvents, after: int) -> AsyncIterator[EventRecord]:
    while True:
        page = await read(after, PAGE)
        for event in page:
            yield event
        if len(page) < PAGE:
            return
        after = page[-1].seq


async def messages(
    session_id: str, read: ReadEvents, after: int, limit: int
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async for event in _scan(read, after):
        if (item := display_message(session_id, event)) is not None:
            out.append(item)
            if len(out) >= limit:
                break
    return out


async def timeline(
    session_id: str, read: ReadEvents, after: int, limit: int, kind: str | None
) -> list[dict[str, Any]]:
    """Entries after ``after``, at most ``limit`` (an event's entries are never split,
    so ``after=<last sequence>`` pages on without losing any)."""
    out: list[dict[str, Any]] = []
    async for event in _scan(read, after):
        entries = [e for e in classify(event) if kind is None or e[0] == kind]
        if out and len(out) + len(entries) > limit:
            break
        out += [timeline_entry(session_id, event, n, e) for n, e in enumerate(entries)]
        if len(out) >= limit:
            break
    return out
