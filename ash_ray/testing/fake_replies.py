"""Scripted replies of the fake Messages API and how they are rendered on the wire.

A reply is a list of content blocks (:func:`text`, :func:`tool_use`, :func:`thinking`)
plus an optional stop reason and delays, or an :class:`ErrorReply`. With nothing
scripted, :func:`default_reply` answers from the conversation itself:

- a line ``TOOL <Name> <json input>`` in the last user message -> that tool_use
  (one block per such line);
- a compaction request (:mod:`ash_ray.testing.fake_cache`) -> a short summary;
- tool_result blocks in the last user message -> ``tool said: <first result text>``;
- anything else -> ``echo: <last user text>``.

Either answer ends with `` [saw: <media types>]`` when the last user message carries
image or document blocks (in tool results too), so a test can tell the model got them.

:func:`sse_frames` renders a reply as the real API streams it: ``message_start`` (with
usage), per block ``content_block_start``, ``ping`` (after the first start),
``content_block_delta``\\ s (text_delta, input_json_delta in several pieces,
thinking_delta + signature_delta), ``content_block_stop``, then ``message_delta``
(stop_reason + usage) and ``message_stop``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from ash_ray.testing.fake_cache import summary_reply

Block = dict[str, Any]

_TOOL_LINE = re.compile(r"^TOOL\s+(\S+)\s*(.*)$")


def text(value: str) -> Block:
    """A text content block."""
    return {"type": "text", "text": value}


def tool_use(name: str, input: dict[str, Any] | None = None, id: str | None = None) -> Block:
    """A tool_use block; the id is made up when not given."""
    return {"type": "tool_use", "id": id or new_id("toolu_"), "name": name, "input": input or {}}


def thinking(value: str, signature: str = "fake-signature") -> Block:
    """A thinking block (streamed as thinking_delta then signature_delta)."""
    return {"type": "thinking", "thinking": value, "signature": signature}


def new_id(prefix: str) -> str:
    return prefix + os.urandom(12).hex()


@dataclass(frozen=True)
class Reply:
    """One scripted assistant message. Delays of None use the server's configured ones."""

    content: list[Block]
    stop_reason: str | None = None
    first_token_delay_s: float | None = None
    chunk_delay_s: float | None = None
    usage: dict[str, int] | None = None

    @property
    def final_stop_reason(self) -> str:
        if self.stop_reason:
            return self.stop_reason
        return "tool_use" if any(b.get("type") == "tool_use" for b in self.content) else "end_turn"


@dataclass(frozen=True)
class ErrorReply:
    """An API error answer, in Anthropic's error shape.

    ``in_stream=True`` on a streaming request answers 200, sends ``message_start`` and
    then an SSE ``error`` event, as the real API does when it fails mid-stream.
    ``should_retry`` sets the ``x-should-retry`` header the SDK obeys.
    """

    status: int = 529
    type: str = "overloaded_error"
    message: str = "Overloaded"
    in_stream: bool = False
    should_retry: bool | None = None

    def body(self) -> dict[str, Any]:
        return {
            "type": "error",
            "error": {"type": self.type, "message": self.message},
            "request_id": new_id("req_"),
        }


AnyReply = Reply | ErrorReply
InputUsage = int | dict[str, int]  # input_tokens, or input + cache figures
Scriptable = Reply | ErrorReply | str | list[Block] | dict[str, Any]


def to_reply(item: Scriptable) -> AnyReply:
    """Normalize what ``script()`` accepts (a str is a text reply, a list is blocks)."""
    if isinstance(item, Reply | ErrorReply):
        return item
    if isinstance(item, str):
        return Reply([text(item)])
    if isinstance(item, list):
        return Reply(list(item))
    if isinstance(item, dict) and isinstance(item.get("error"), dict):
        return ErrorReply(**item["error"])
    if isinstance(item, dict) and isinstance(item.get("content"), list):
        return Reply(**{k: v for k, v in item.items() if k in Reply.__dataclass_fields__})
    raise ValueError(f"cannot script {item!r}: give a Reply, ErrorReply, str or list of blocks")


def to_json(item: AnyReply) -> dict[str, Any]:
    """The JSON form of a reply, as ``POST /_fake/script`` accepts it."""
    if isinstance(item, ErrorReply):
        return {"error": asdict(item)}
    return {k: v for k, v in asdict(item).items() if v is not None}


# ---------------------------------------------------------------- default rules


def text_of(content: Any) -> str:
    """The text of a message or tool_result content (a string or a list of blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        blocks = [b for b in content if isinstance(b, dict) and b.get("type") == "text"]
        return "".join(str(b.get("text", "")) for b in blocks)
    return ""


def default_reply(body: dict[str, Any]) -> Reply:
    """The unscripted answer to a request (rules in the module docstring)."""
    messages = body.get("messages") or []
    last = next((m for m in reversed(messages) if m.get("role") == "user"), {"content": ""})
    content = last.get("content", "")
    said = text_of(content)
    if (summary := summary_reply(said)) is not None:
        return Reply([text(summary)])
    calls: list[Block] = []
    for line in said.splitlines():
        found = _TOOL_LINE.match(line.strip())
        if not found:
            continue
        try:
            args = json.loads(found.group(2)) if found.group(2).strip() else {}
        except json.JSONDecodeError as exc:
            return Reply([text(f"fake-anthropic: bad TOOL input {found.group(2)!r}: {exc}")])
        calls.append(tool_use(found.group(1), args if isinstance(args, dict) else {"value": args}))
    if calls:
        return Reply(calls)
    seen = media_of(content)
    saw = f" [saw: {', '.join(seen)}]" if seen else ""
    if isinstance(content, list):
        results = [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
        if results:
            return Reply([text(f"tool said: {text_of(results[0].get('content', ''))}{saw}")])
    return Reply([text(f"echo: {said}{saw}")])


def media_of(content: Any) -> list[str]:
    """Media types of the image and document blocks in ``content`` (and its tool results);
    a URL source counts as ``url``."""
    found: list[str] = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "tool_result":
            found += media_of(block.get("content"))
        elif block.get("type") in ("image", "document"):
            source = block.get("source") or {}
            found.append(str(source.get("media_type") or source.get("type")))
    return found


# ---------------------------------------------------------------- rendering


def _finished(block: Block) -> Block:
    if block.get("type") == "tool_use" and not block.get("id"):
        return {**block, "id": new_id("toolu_")}
    return block


def _usage(reply: Reply, input_tokens: InputUsage, output_chars: int) -> dict[str, int]:
    usage = {
        "input_tokens": input_tokens if isinstance(input_tokens, int) else 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": max(1, output_chars // 4),
    }
    if isinstance(input_tokens, dict):  # the prompt-cache accounting of fake_cache
        usage.update(input_tokens)
    usage.update(reply.usage or {})
    return usage


def _output_chars(blocks: list[Block]) -> int:
    return sum(
        len(b.get("text") or b.get("thinking") or json.dumps(b.get("input", {}))) for b in blocks
    )


def message_body(reply: Reply, model: str, input_tokens: InputUsage) -> dict[str, Any]:
    """The non-streaming response body."""
    blocks = [_finished(b) for b in reply.content]
    return {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": reply.final_stop_reason,
        "stop_sequence": None,
        "usage": _usage(reply, input_tokens, _output_chars(blocks)),
    }


def _pieces(value: str, size: int) -> list[str]:
    return [value[i : i + size] for i in range(0, len(value), size)] or [""]


def _frame(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def sse_frames(
    reply: Reply, model: str, input_tokens: InputUsage, chunk_chars: int = 16
) -> Iterator[tuple[bytes, bool]]:
    """The streamed response as ``(frame, is_token)``; token frames are where delays go."""
    blocks = [_finished(b) for b in reply.content]
    usage = _usage(reply, input_tokens, _output_chars(blocks))
    start = dict(message_body(reply, model, input_tokens), content=[], stop_reason=None)
    start["usage"] = {**usage, "output_tokens": 1}
    yield _frame("message_start", {"type": "message_start", "message": start}), False
    for index, block in enumerate(blocks):
        kind = block.get("type")
        if kind == "text":
            empty: Block = {"type": "text", "text": ""}
            pieces = _pieces(block["text"], chunk_chars)
            deltas = [{"type": "text_delta", "text": p} for p in pieces]
        elif kind == "thinking":
            empty = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [
                {"type": "thinking_delta", "thinking": p}
                for p in _pieces(block["thinking"], chunk_chars)
            ]
            deltas.append({"type": "signature_delta", "signature": block.get("signature", "")})
        elif kind == "tool_use":
            empty = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            arguments = json.dumps(block.get("input", {}))
            # The real API starts with an empty piece, then splits the JSON anywhere.
            pieces = ["", *_pieces(arguments, max(1, -(-len(arguments) // 3)))]
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
        else:
            empty, deltas = block, []
        yield _frame(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": empty},
        ), False
        if index == 0:
            yield _frame("ping", {"type": "ping"}), False
        for delta in deltas:
            data = {"type": "content_block_delta", "index": index, "delta": delta}
            yield _frame("content_block_delta", data), True
        yield _frame("content_block_stop", {"type": "content_block_stop", "index": index}), False
    yield _frame(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": reply.final_stop_reason, "stop_sequence": None},
            "usage": usage,
        },
    ), False
    yield _frame("message_stop", {"type": "message_stop"}), False


def error_frame(error: ErrorReply) -> bytes:
    """The SSE ``error`` event of a stream that fails midway."""
    return _frame("error", {"type": "error", "error": error.body()["error"]})


@dataclass
class Timing:
    """Delays the server applies when a reply does not set its own."""

    first_token_delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    chunk_chars: int = 16

    def for_reply(self, reply: Reply) -> tuple[float, float]:
        first, chunk = reply.first_token_delay_s, reply.chunk_delay_s
        return (
            self.first_token_delay_s if first is None else first,
            self.chunk_delay_s if chunk is None else chunk,
        )
