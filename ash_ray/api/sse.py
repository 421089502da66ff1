"""Server-Sent Events framing and the event pump from a session worker to a client."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import ray

logger = logging.getLogger(__name__)

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "Connection": "keep-alive",
    "X-Accel-Buffering": "no",
}
HEARTBEAT = b": ping\n\n"


def frame(seq: int, type_: str, data: Any) -> bytes:
    payload = json.dumps(data, separators=(",", ":"))
    return f"id: {seq}\nevent: {type_}\ndata: {payload}\n\n".encode()


async def pump(
    handle: Any,
    registry: Any,
    session_id: str,
    after: int,
    heartbeat_s: float,
    until_done: bool = True,
) -> AsyncIterator[bytes]:
    """Yield frames of events with seq > ``after`` until a ``done`` event.

    Events older than the worker's memory come from the store; a dead worker ends the
    stream with ``error`` and ``done`` that the registry also records.
    """
    seen = after
    if handle is not None:
        try:
            oldest = await handle.oldest_seq.remote()
        except ray.exceptions.RayError:
            oldest = None
        if oldest is None or oldest > seen + 1:
            for seq, type_, data, _ts in await registry.list_events.remote(session_id, seen, None):
                if oldest is not None and seq >= oldest:
                    break
                yield frame(seq, type_, data)
                seen = seq
                if type_ == "done" and until_done and oldest is None:
                    return
        if oldest is None:
            handle = None
    if handle is None:
        async for chunk in _from_store(registry, session_id, seen):
            yield chunk
        return
    while True:
        try:
            events = await handle.wait_events.remote(seen, heartbeat_s)
        except ray.exceptions.RayError:
            logger.warning("session %s worker died mid-stream", session_id)
            for seq, type_, data in await registry.worker_failed.remote(session_id, seen):
                yield frame(seq, type_, data)
            return
        if not events:
            yield HEARTBEAT
            continue
        for seq, type_, data in events:
            yield frame(seq, type_, data)
            seen = seq
            if type_ == "done" and until_done:
                return


async def _from_store(registry: Any, session_id: str, after: int) -> AsyncIterator[bytes]:
    rows = await registry.list_events.remote(session_id, after, None)
    for seq, type_, data, _ts in rows:
        yield frame(seq, type_, data)
