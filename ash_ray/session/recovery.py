"""A turn whose worker was lost, picked up by the session's next worker.

The stored conversation holds every finished model reply and tool result of the turn (each
is flushed as it happens). What was in flight is not there: a model reply still streaming
(called again) and tools that were running. A tool may have had effects, so it is not run
again blindly: it gets an error result that says why, and the model decides.
"""

from __future__ import annotations

from typing import Any

from ash_ray.session.events import EventLog

# The end of a turn a new worker cannot continue: its prompt was not saved with the
# conversation yet (the worker was lost within a flush interval of the start), or
# ASH_TURN_RECOVERY=interrupt and nobody closed it yet. Its followers get this and `done`.
LOST_TURN = (
    "the session's worker was lost during this turn and the turn could not be continued; "
    "send the message again"
)

LOST_TOOL = (
    "the session's worker (its process or node) was lost while this tool ran; "
    "it was not run again, and its effects, if any, are unknown"
)


def continuable(conversation: list[dict[str, Any]]) -> bool:
    """Whether the model has something to answer: the user's side (a prompt, tool
    results) or tool calls left without results end the conversation."""
    if not conversation:
        return False
    last = conversation[-1]
    return last["role"] == "user" or bool(_pending_tools(last))


def close_lost_tools(conversation: list[dict[str, Any]], log: EventLog) -> None:
    """Give the tool calls the lost worker was running an error result (and tell the log)."""
    pending = _pending_tools(conversation[-1]) if conversation else []
    if not pending:
        return
    results = [
        {"type": "tool_result", "tool_use_id": tid, "content": LOST_TOOL, "is_error": True}
        for tid in pending
    ]
    conversation.append({"role": "user", "content": results})
    for result in results:
        log.emit("tool_result", {k: result[k] for k in ("tool_use_id", "content", "is_error")})
    log.emit("message", {
        "type": "user", "message": {"role": "user", "content": results},
        "parent_tool_use_id": None,
    })  # fmt: skip


def _pending_tools(message: dict[str, Any]) -> list[str]:
    if message["role"] != "assistant" or not isinstance(message["content"], list):
        return []
    return [b["id"] for b in message["content"] if b.get("type") == "tool_use"]


def repair_conversation(conversation: list[dict[str, Any]]) -> None:
    """Keep the conversation valid for the Messages API after an error, interrupt or crash."""
    if not conversation:
        return
    last = conversation[-1]
    if last["role"] == "assistant" and isinstance(last["content"], list):
        pending = [b["id"] for b in last["content"] if b.get("type") == "tool_use"]
        if pending:
            conversation.append({
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": tid,
                     "content": "interrupted before the tool ran", "is_error": True}
                    for tid in pending
                ],
            })
    elif last["role"] == "user":
        conversation.append(
            {"role": "assistant", "content": [{"type": "text", "text": "(turn interrupted)"}]}
        )
