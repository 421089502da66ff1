"""Values of a turn: its options, its events, and content blocks in API input form."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ash_ray.agent.spec import AgentSpec
from ash_ray.models import Usage

NO_JSON = object()


@dataclass(frozen=True)
class TurnOptions:
    """Per-turn knobs; None means the agent's or the settings' default."""

    model: str | None = None
    max_turns: int | None = None
    max_budget_usd: float | None = None
    include_partial: bool = False
    system_prompt: str | None = None
    allowed_tools: Sequence[str] | None = None
    disallowed_tools: Sequence[str] | None = None
    output_format: dict[str, Any] | None = None
    # Passed to the Messages API as they are: ``thinking`` ({"type": "enabled",
    # "budget_tokens": N} or {"type": "adaptive"}), ``effort`` as output_config.effort
    # (low|medium|high|xhigh|max), ``betas`` as the anthropic-beta header.
    thinking: dict[str, Any] | None = None
    # agenttools: the session's permissionMode, mcpServers and subagents (toolbox.py).
    permission_mode: str | None = None
    mcp_servers: dict[str, Any] | None = None
    subagents: dict[str, Any] | None = None
    # The subagent the main thread runs as (:func:`.subagents.main_thread`).
    initial_agent: str | None = None
    effort: str | None = None
    betas: Sequence[str] | None = None


@dataclass(frozen=True)
class AgentEvent:
    """One event of a turn; the session layer numbers and streams them."""

    type: str
    data: dict[str, Any]


def usage_of(raw: Any) -> Usage:
    """Our Usage from the SDK's (absent counts are 0)."""
    return Usage(
        input_tokens=getattr(raw, "input_tokens", 0) or 0,
        output_tokens=getattr(raw, "output_tokens", 0) or 0,
        cache_creation_input_tokens=getattr(raw, "cache_creation_input_tokens", 0) or 0,
        cache_read_input_tokens=getattr(raw, "cache_read_input_tokens", 0) or 0,
    )


def api_block(block: Any) -> dict[str, Any]:
    """A response content block reduced to the form the API accepts back as input."""
    kind = block.type
    if kind == "text":
        return {"type": "text", "text": block.text}
    if kind == "thinking":
        return {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
    if kind == "redacted_thinking":
        return {"type": "redacted_thinking", "data": block.data}
    if kind == "tool_use":
        tool_input = block.input if isinstance(block.input, dict) else {}
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": tool_input}
    dumped: dict[str, Any] = block.model_dump(mode="json", exclude_none=True)
    return dumped


def text_of(blocks: list[dict[str, Any]]) -> str:
    """The text of content blocks, joined."""
    return "".join(b["text"] for b in blocks if b.get("type") == "text")


def parse_json_answer(text: str) -> Any:
    """The JSON document in a final answer (bare or in a ``` fence), or ``NO_JSON``."""
    body = text.strip()
    fenced = re.match(r"^```[a-zA-Z]*\s*(.*?)\s*```$", body, re.S)
    if fenced:
        body = fenced.group(1)
    try:
        return json.loads(body)
    except ValueError:
        return NO_JSON


def json_schema_of(output_format: dict[str, Any] | None) -> dict[str, Any] | None:
    """The JSON schema of a ``{"type": "json_schema", "schema": ...}`` output format."""
    if not output_format or output_format.get("type") != "json_schema":
        return None
    schema = output_format.get("schema") or (output_format.get("json_schema") or {}).get("schema")
    return schema if isinstance(schema, dict) else None


def assistant_message(
    message: Any, blocks: list[dict[str, Any]], model: str, interrupted: bool
) -> dict[str, Any]:
    """The assistant message of a ``message`` event, shaped like the API's response."""
    return {
        "id": getattr(message, "id", None),
        "type": "message",
        "role": "assistant",
        "model": getattr(message, "model", None) or model,
        "content": blocks,
        "stop_reason": None if interrupted else getattr(message, "stop_reason", None),
        "stop_sequence": getattr(message, "stop_sequence", None),
        "usage": usage_of(getattr(message, "usage", None)).model_dump(),
    }


def asks_for_tools(event_type: str, data: dict[str, Any]) -> bool:
    """Whether an event is a turn's own assistant message asking for tools (not one of a
    subagent's, which runs inside a tool of the turn)."""
    if event_type != "message" or data.get("type") != "assistant" or data.get("parent_tool_use_id"):
        return False
    content = (data.get("message") or {}).get("content") or []
    return any(isinstance(b, dict) and b.get("type") == "tool_use" for b in content)


def result_message(
    subtype: str,
    num_turns: int,
    final_text: str,
    usage: Usage,
    cost_usd: float,
    output_format: dict[str, Any] | None,
    *,
    duration_ms: int,
    duration_api_ms: int,
) -> dict[str, Any]:
    """The turn's ``result`` message, shaped like the Claude Agent SDK's."""
    result: dict[str, Any] = {
        "type": "result",
        "subtype": subtype,
        "is_error": subtype != "success",
        "num_turns": num_turns,
        "result": final_text,
        "usage": usage.model_dump(),
        "total_cost_usd": round(cost_usd, 6),
        "duration_ms": duration_ms,
        "duration_api_ms": duration_api_ms,
    }
    if subtype == "success" and json_schema_of(output_format) is not None:
        parsed = parse_json_answer(final_text)
        if parsed is not NO_JSON:
            result["structured_output"] = parsed
    return result


def system_prompt(
    spec: AgentSpec, options: TurnOptions, with_skills: bool, workspace: Path
) -> tuple[str, str]:
    """The system prompt: the agent's part (the same in all its sessions), then this
    session's environment. Only the first is cached on its own, so the sessions of one
    agent share that prefix in the API's cache."""
    parts = [options.system_prompt or spec.system_prompt]
    if with_skills and spec.skills:
        listed = "\n".join(f"- {s.name}: {s.description}" for s in spec.skills)
        parts.append(f"# Skills\nLoad one with the Skill tool when it fits the task:\n{listed}")
    schema = json_schema_of(options.output_format)
    if schema is not None:
        parts.append(
            "# Output format\nYour final answer must be only a JSON document (no prose, "
            f"no code fence) valid against this JSON schema:\n{json.dumps(schema)}"
        )
    environment = (
        f"# Environment\nWorking directory: {workspace}\n"
        "File tools take paths relative to it or absolute paths inside it."
    )
    return "\n\n".join(parts), environment


# ---------------------------------------------------------------- SDK message shapes
# What Ash's clients read from ``message`` events and GET .../messages: the Claude Agent
# SDK's messages (SDKUserMessage, SDKPartialAssistantMessage, ...), each whole.

# The raw Messages-API stream events, without what the anthropic SDK adds to them
# (the accumulated block of content_block_stop, the snapshot of message_stop).
_RAW_FIELDS: dict[str, tuple[str, ...]] = {
    "message_start": ("message",),
    "content_block_start": ("index", "content_block"),
    "content_block_delta": ("index", "delta"),
    "content_block_stop": ("index",),
    "message_delta": ("delta", "usage"),
    "message_stop": (),
}


def user_message(content: Any) -> dict[str, Any]:
    """The prompt as an SDK user message."""
    return {
        "type": "user",
        "message": {"role": "user", "content": content},
        "parent_tool_use_id": None,
    }


def stream_event_message(event: Any) -> dict[str, Any] | None:
    """A raw stream event as an SDK ``stream_event`` message (None: not a raw event)."""
    fields = _RAW_FIELDS.get(event.type)
    if fields is None:
        return None
    raw = event.model_dump(mode="json", include={"type", *fields}, exclude_none=True)
    return {"type": "stream_event", "event": raw, "parent_tool_use_id": None}


def delta_event(event: Any) -> AgentEvent | None:
    """The granular event of a raw ``content_block_delta``, named as Ash names it."""
    if event.type != "content_block_delta":
        return None
    delta = event.delta
    if delta.type == "text_delta":
        return AgentEvent("text_delta", {"delta": delta.text})
    if delta.type == "thinking_delta":
        return AgentEvent("thinking_delta", {"delta": delta.thinking})
    # input_json_delta, signature_delta, citations_delta: under their own name (as Ash).
    return AgentEvent(delta.type, delta.model_dump(mode="json", exclude_none=True))


def tool_result_message(block: dict[str, Any], tool_name: str) -> dict[str, Any]:
    """One tool result as the SDK's user message, with ``tool_use_result`` (what Ash's
    helpers read: ``stdout``/``stderr``, ``tool_use_id``, ``tool_name``, ``is_error``)."""
    content = block.get("content")
    output = content if isinstance(content, str) else text_of(content or [])
    return {
        "type": "user",
        "message": {"role": "user", "content": [block]},
        "parent_tool_use_id": None,
        "tool_use_result": {
            "tool_use_id": block["tool_use_id"],
            "tool_name": tool_name,
            "stdout": output,
            "stderr": "",
            "is_error": bool(block.get("is_error")),
        },
    }
