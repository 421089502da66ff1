"""Values of a turn: its options, its events, and content blocks in API input form."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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
    thinking: dict[str, Any] | None = None
    # agenttools: the session's permissionMode, mcpServers and subagents (toolbox.py).
    permission_mode: str | None = None
    mcp_servers: dict[str, Any] | None = None
    subagents: dict[str, Any] | None = None


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
