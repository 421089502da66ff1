"""Run the anthropic SDK's first-request code paths once, against a canned local answer.

A fresh process pays about 50 ms on its first streamed message (lazy imports, type
construction, partial-JSON parsing). Session workers do this while they wait in the warm
pool, so that a session's first answer does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import anthropic

logger = logging.getLogger(__name__)

_EVENTS: list[dict[str, Any]] = [
    {"type": "message_start", "message": {
        "id": "msg_warmup", "type": "message", "role": "assistant", "model": "warm-up",
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 0}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "ok"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "toolu_warmup", "name": "LS", "input": {}}},
    {"type": "content_block_delta", "index": 1, "delta": {
        "type": "input_json_delta", "partial_json": '{"path": "."}'}},
    {"type": "content_block_stop", "index": 1},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
     "usage": {"output_tokens": 2}},
    {"type": "message_stop"},
]
_BODY = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in _EVENTS).encode()


async def warm_sdk() -> bool:
    """One streamed request through a throwaway client; False (and a log line) on failure."""
    server = await asyncio.start_server(_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = anthropic.AsyncAnthropic(
        api_key="warm-up", base_url=f"http://127.0.0.1:{port}", max_retries=0, timeout=10
    )
    try:
        async with client.messages.stream(
            model="warm-up",
            max_tokens=16,
            messages=[{"role": "user", "content": "warm-up"}],
            tools=[{"name": "LS", "description": "list", "input_schema": {"type": "object"}}],
        ) as stream:
            async for _event in stream:
                pass
            final = await stream.get_final_message()
        return [block.type for block in final.content] == ["text", "tool_use"]
    except Exception:
        logger.warning("SDK warm-up failed (the first turn pays it instead)", exc_info=True)
        return False
    finally:
        await client.close()
        server.close()
        await server.wait_closed()


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ValueError):
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        await reader.readexactly(length)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            + f"content-length: {len(_BODY)}\r\nconnection: close\r\n\r\n".encode()
            + _BODY
        )
        await writer.drain()
    writer.close()
