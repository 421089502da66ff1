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


async def start_turn(handle: Any, prompt: Any, options: dict[str, Any], heartbeat_s: float) -> Any:
    """Start a turn on the worker: one streaming call that runs it and pushes its events.

    Awaits the first batch (``session_start``), so a refusal such as a busy session raises
    here, before any response is sent. Returns what :func:`pump` takes as ``turn``.
    """
    stream = handle.run_turn.options(num_returns="streaming").remote(prompt, options, heartbeat_s)
    first = await (await stream.__anext__())
    return stream, first


async def pump(
    handle: Any,
    registry: Any,
    session_id: str,
    after: int,
    heartbeat_s: float,
    replay: bool = False,
    turn: Any = None,
) -> AsyncIterator[bytes]:
    """Yield frames of events with seq > ``after`` until the turn's ``done``.

    The worker pushes event batches through a Ray streaming generator (no request per
    batch): ``turn`` from :func:`start_turn`, or else a re-attach to the running turn.
    With ``replay``, events the worker no longer holds come from the store first.
    A dead worker ends the stream with ``error`` and ``done``, which the registry records.
    """
    seen = after
    try:
        if turn is not None:
            stream, first = turn
            yield _frames(first)
            seen = first[-1][0]
        else:
            if replay:
                oldest = await handle.oldest_seq.remote()
                if oldest > seen + 1:
                    for seq, type_, data, _ts in await registry.list_events.remote(
                        session_id, seen, oldest - seen - 1
                    ):
                        yield frame(seq, type_, data)
                        seen = seq
            stream = handle.stream_events.options(num_returns="streaming").remote(
                seen, heartbeat_s
            )
        async for ref in stream:
            batch = await ref
            if not batch:
                yield HEARTBEAT
                continue
            yield _frames(batch)
            seen = batch[-1][0]
    except ray.exceptions.RayError:
        logger.warning("session %s worker died mid-stream", session_id)
        for seq, type_, data in await registry.worker_failed.remote(session_id, seen):
            yield frame(seq, type_, data)


def _frames(batch: list) -> bytes:
    """One chunk a batch: fewer, larger writes to the client."""
    return b"".join(frame(seq, type_, data) for seq, type_, data in batch)


async def from_store(registry: Any, session_id: str, after: int) -> AsyncIterator[bytes]:
    """Frames of a session's stored events (no turn running)."""
    for seq, type_, data, _ts in await registry.list_events.remote(session_id, after, None):
        yield frame(seq, type_, data)
