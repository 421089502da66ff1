"""Compaction: older turns summarized by the model, recent ones kept verbatim.

The conversation the session keeps is the full history, append-only. A compaction
appends one *boundary* message (role ``user``) that holds the summary and says how many
messages before it stay verbatim. What the model is sent is :func:`context_of` the
history: the last boundary's summary, the kept messages, then everything after the
boundary. So the stored rows are the full history (``GET .../messages``), and reloading
them on a cold resume yields the compacted context with no extra state to persist.

A cut never falls between an assistant ``tool_use`` and the user ``tool_result`` that
answers it: the kept part starts at an assistant message or at a user prompt.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import anthropic

from ash_ray.agent.messages import usage_of
from ash_ray.models import Usage

_BOUNDARY = re.compile(r"^\[compact boundary: (\d+) earlier messages kept verbatim\]")
SUMMARY_INTRO = (
    "This session is being continued from a previous conversation that ran out of "
    "context. The summary below covers the earlier part of the conversation.\n\n"
)
SUMMARY_TAG = "conversation-to-summarize"
SUMMARY_SYSTEM = (
    "You summarize the conversation of a coding agent so that it can continue the work "
    "without the original messages. Keep: the user's requests and constraints, decisions "
    "made, files read or changed (paths), commands run and their outcomes, errors and how "
    "they were solved, and what remains to do. Be concise and factual."
)
_BLOCK_CHARS = 2_000  # per tool input/result in the transcript
SUMMARY_MAX_TOKENS = 4096


def estimate_tokens(value: Any) -> int:
    """A deterministic token estimate: JSON characters / 4 (errs on the high side)."""
    return len(json.dumps(value, separators=(",", ":"))) // 4


class ContextSize:
    """How big the next call's input is, for the compaction threshold: the last call's
    measured input plus an estimate of what came after it; without a measure (a cold
    resume, right after a compaction), an estimate of the context and the fixed part."""

    def __init__(self, limit_tokens: float) -> None:
        self.limit_tokens = limit_tokens
        # (history length, input tokens) of the last call: the base of the estimate.
        self._measured: tuple[int, int] | None = None
        # History length right after the last compaction: no second one until it grows,
        # so a tail too big to shrink costs one summary, not one per call.
        self._compacted_len = -1
        # The turn's system prompt and tools, and their size: estimated when a size is
        # needed, and again only after they changed (None: not estimated yet).
        self._fixed: list[Any] = [None, None]
        self._fixed_tokens: int | None = 0

    def turn_fixed(self, system: Any, tools: Any) -> None:
        if [system, tools] != self._fixed:
            self._fixed, self._fixed_tokens = [system, tools], None

    def fixed_tokens(self) -> int:
        """The estimated size of the turn's system prompt and tools."""
        if self._fixed_tokens is None:
            self._fixed_tokens = estimate_tokens(self._fixed)
        return self._fixed_tokens

    def measured(self, history_len: int, used: Usage) -> None:
        """A call with ``history_len`` messages used this input."""
        total = used.input_tokens + used.cache_read_input_tokens + used.cache_creation_input_tokens
        self._measured = (history_len, total)

    def compacted(self, history_len: int) -> None:
        self._measured, self._compacted_len = None, history_len

    def over_threshold(self, conversation: list[dict[str, Any]]) -> bool:
        """Whether the next call's input is estimated past the compaction threshold."""
        if len(conversation) <= self._compacted_len + 1:
            return False
        measured = self._measured
        if measured is not None and measured[0] <= len(conversation):
            size = measured[1] + estimate_tokens(conversation[measured[0] :])
        else:
            size = self.fixed_tokens() + estimate_tokens(context_of(conversation)[0])
        return size > self.limit_tokens


def _kept_count(message: dict[str, Any]) -> int | None:
    """How many messages a boundary keeps, or None when ``message`` is no boundary."""
    content = message.get("content")
    if message.get("role") != "user" or not isinstance(content, list) or len(content) != 2:
        return None
    first, second = content
    if not all(isinstance(b, dict) and b.get("type") == "text" for b in content):
        return None
    if not str(second.get("text", "")).startswith(SUMMARY_INTRO):
        return None
    found = _BOUNDARY.match(str(first.get("text", "")))
    return int(found.group(1)) if found else None


def boundary_message(summary: str, kept: int) -> dict[str, Any]:
    """The history entry a compaction appends (readable as it is in ``GET .../messages``)."""
    return {
        "role": "user",
        "content": [
            {"type": "text", "text": f"[compact boundary: {kept} earlier messages kept verbatim]"},
            {"type": "text", "text": SUMMARY_INTRO + summary},
        ],
    }


def context_of(history: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[int]]:
    """The messages to send the model, and each one's index in ``history`` (-1: summary)."""
    for b in range(len(history) - 1, -1, -1):
        kept = _kept_count(history[b])
        if kept is None:
            continue
        start = max(0, b - kept)
        index = [
            i for i in range(start, len(history)) if i != b and _kept_count(history[i]) is None
        ]
        summary = {"role": "user", "content": [history[b]["content"][1]]}
        return [summary, *(history[i] for i in index)], [-1, *index]
    return list(history), list(range(len(history)))


def _has_tool_result(message: dict[str, Any]) -> bool:
    content = message.get("content")
    return isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content
    )


def _is_prompt(message: dict[str, Any]) -> bool:
    return message.get("role") == "user" and not _has_tool_result(message)


def choose_cut(
    view: list[dict[str, Any]], index: list[int], keep_turns: int, keep_tokens: int
) -> int | None:
    """Where the kept part of ``view`` starts, or None when nothing can be summarized.

    The last ``keep_turns`` prompts and what followed them stay, unless that is more
    than ``keep_tokens``: then the cut moves later, to the first safe place under it.
    """
    low = 2 if index and index[0] == -1 else 1  # summarizing only a summary gains nothing
    safe = [c for c in range(low, len(view)) if not _has_tool_result(view[c])]
    if not safe:
        return None
    prompts = [c for c in safe if _is_prompt(view[c])]
    start = prompts[-keep_turns] if keep_turns and len(prompts) >= keep_turns else safe[0]
    tail = [0] * (len(view) + 1)  # tail[c]: tokens of view[c:], each message sized once
    for c in range(len(view) - 1, -1, -1):
        tail[c] = tail[c + 1] + estimate_tokens(view[c])
    return next((c for c in safe if c >= start and tail[c] <= keep_tokens), safe[-1])


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit // 2] + " [...] " + text[-limit // 2 :]


def _block_line(role: str, block: Any) -> str:
    if isinstance(block, str):
        return f"{role}: {block}"
    kind = block.get("type")
    if kind == "text":
        return f"{role}: {block.get('text', '')}"
    if kind == "tool_use":
        args = _clip(json.dumps(block.get("input", {})), _BLOCK_CHARS)
        return f"{role} called {block.get('name')} {args}"
    if kind == "tool_result":
        content = block.get("content")
        if isinstance(content, list):
            content = " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
        label = "tool result (error)" if block.get("is_error") else "tool result"
        return f"{label}: {_clip(str(content), _BLOCK_CHARS)}"
    return ""  # thinking and other blocks: not worth summary tokens


def transcript(messages: list[dict[str, Any]], max_chars: int) -> str:
    """The messages as plain text for the summarizer (head and tail kept when too long)."""
    lines: list[str] = []
    for message in messages:
        content = message.get("content")
        blocks = content if isinstance(content, list) else [content]
        lines += [line for b in blocks if (line := _block_line(message["role"], b))]
    return _clip("\n".join(lines), max_chars)


@dataclass(frozen=True)
class CompactResult:
    """What one compaction did; ``event()`` is the ``compact`` event's data."""

    trigger: str  # auto | manual | prompt_too_long
    summary: str
    summarized_messages: int
    summarized_turns: int
    kept_messages: int
    tokens_before: int
    tokens_after: int
    usage: Usage = field(default_factory=Usage)

    def boundary_message(self) -> dict[str, Any]:
        """The Claude Agent SDK's message for it (``system`` / ``compact_boundary``)."""
        trigger = "manual" if self.trigger == "manual" else "auto"
        return {
            "type": "system",
            "subtype": "compact_boundary",
            "compact_metadata": {"trigger": trigger, "pre_tokens": self.tokens_before},
        }

    def event(self) -> dict[str, Any]:
        return {
            "trigger": self.trigger,
            "summarizedMessages": self.summarized_messages,
            "summarizedTurns": self.summarized_turns,
            "keptMessages": self.kept_messages,
            "tokensBefore": self.tokens_before,
            "tokensAfter": self.tokens_after,
            "summary": self.summary,
        }


async def summarize(
    client: anthropic.AsyncAnthropic,
    model: str,
    text: str,
    max_tokens: int,
    betas: list[str] | None = None,
) -> tuple[str, Usage]:
    """Ask the model for a summary of ``text``; returns it and the call's usage.

    ``betas`` are the turn's (a long-context beta must cover this call too).
    """
    request: dict[str, Any] = {
        "model": model,
        # Not streamed, so kept short: the SDK refuses long non-streaming calls.
        "max_tokens": min(max_tokens, SUMMARY_MAX_TOKENS),
        "system": SUMMARY_SYSTEM,
        "messages": [
            {
                "role": "user",
                "content": f"<{SUMMARY_TAG}>\n{text}\n</{SUMMARY_TAG}>\n\n"
                "Summarize the conversation above.",
            }
        ],
    }
    if betas:
        message: Any = await client.beta.messages.create(**request, betas=betas)
    else:
        message = await client.messages.create(**request)
    summary = "".join(b.text for b in message.content if b.type == "text").strip()
    return summary or "(no summary)", usage_of(message.usage)


async def compact(
    client: anthropic.AsyncAnthropic,
    model: str,
    history: list[dict[str, Any]],
    *,
    trigger: str,
    keep_turns: int,
    keep_tokens: int,
    max_chars: int,
    max_tokens: int,
    overhead_tokens: int = 0,
    betas: list[str] | None = None,
    note: str = "",
) -> CompactResult | None:
    """Summarize the older part of ``history`` and append the boundary (None: nothing to do).

    ``note`` is added to the summary as it is (the session's todo list, for one).
    """
    view, index = context_of(history)
    cut = choose_cut(view, index, keep_turns, keep_tokens)
    if cut is None:
        return None
    old = view[:cut]
    text = transcript(old, max_chars)
    summary, usage = await summarize(client, model, text, max_tokens, betas)
    summary += note
    kept = len(history) - index[cut]
    before = overhead_tokens + estimate_tokens(view)
    history.append(boundary_message(summary, kept))
    after = overhead_tokens + estimate_tokens(context_of(history)[0])
    return CompactResult(
        trigger=trigger,
        summary=summary,
        summarized_messages=sum(1 for i in index[:cut] if i >= 0),
        summarized_turns=sum(1 for m in old[1 if index[0] == -1 else 0 :] if _is_prompt(m)),
        kept_messages=len(view) - cut,
        tokens_before=before,
        tokens_after=after,
        usage=usage,
    )
