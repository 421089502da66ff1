"""Server-Sent Events framing and the event pump from a session worker to a client."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import ray

from ash_ray.errors import AshError
from ash_ray.handles import Event, RegistryClient, Turn, WorkerClient, unwrap
from ash_ray.turn_follow import MAX_RECOVERIES

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


async def start_turn(
    worker: WorkerClient, prompt: Any, options: dict[str, Any], heartbeat_s: float
) -> Turn:
    """Start a turn on the worker: one streaming call that runs it and pushes its events.

    Awaits the first batch (``session_start``), so a refusal such as a busy session raises
    here, before any response is sent. A :class:`SessionClient` re-attaches a stale worker
    and starts the turn there. Returns what :func:`pump` takes as ``turn``.
    """
    return await worker.start_turn(prompt, options, heartbeat_s)


async def pump(
    worker: WorkerClient,
    registry: RegistryClient,
    session_id: str,
    after: int,
    heartbeat_s: float,
    replay: bool = False,
    turn: Turn | None = None,
) -> AsyncIterator[bytes]:
    """Yield frames of events with seq > ``after`` until the turn's ``done``.

    The worker pushes event batches through a Ray streaming generator (no request per
    batch): ``turn`` from :func:`start_turn`, or else a re-attach to the running turn.
    With ``replay``, events the worker no longer holds come from the store first.
    A dead worker ends the stream with ``error`` and ``done``, which the registry records.
    """
    client, reg = worker, registry
    seen = after
    # After a lost worker the stream ends at the first ``done`` after what it saw: the
    # continued turn's, even when a queued turn already runs on the new worker.
    continued = False
    for _attempt in range(MAX_RECOVERIES + 1):
        try:
            if turn is not None:
                yield _frames(turn.first)
                seen = turn.first[-1][0]
                batches = _batches(turn.rest)
            else:
                if replay:
                    oldest = await client.oldest_seq()
                    if oldest > seen + 1:
                        for e in await reg.list_events(session_id, seen, oldest - seen - 1):
                            yield frame(e.seq, e.type, e.data)
                            seen = e.seq
                            if continued and e.type == "done":
                                return
                batches = client.stream_events(seen, heartbeat_s)
            async for batch in batches:
                if not batch:
                    yield HEARTBEAT
                    continue
                if continued:
                    batch = _to_done(batch)
                yield _frames(batch)
                seen = batch[-1][0]
                if continued and batch[-1][1] == "done":
                    return
            return
        except (ray.exceptions.RayError, AshError):
            logger.warning("session %s worker died mid-stream", session_id)
            ending = await reg.worker_failed(session_id, seen)
            for seq, type_, data in ending:
                yield frame(seq, type_, data)
            if ending:
                return
        # The turn continues on a new worker (ASH_TURN_RECOVERY=continue): follow it
        # there, in the same numbering, from the store for what it has already done.
        client, turn, replay, continued = await reg.session(session_id), None, True, True
    for seq, type_, data in await reg.worker_failed(session_id, seen):
        yield frame(seq, type_, data)


def _to_done(batch: list[Event]) -> list[Event]:
    """The batch up to and including its first ``done`` (all of it when it has none)."""
    end = next((i for i, event in enumerate(batch) if event[1] == "done"), len(batch) - 1)
    return batch[: end + 1]


async def _batches(refs: ray.ObjectRefGenerator) -> AsyncIterator[list[Event]]:
    async for ref in refs:
        try:
            batch: list[Event] = await ref
        except ray.exceptions.RayTaskError as exc:
            raise unwrap(exc) from None
        yield batch


def _frames(batch: list[Event]) -> bytes:
    """One chunk a batch: fewer, larger writes to the client."""
    return b"".join(frame(seq, type_, data) for seq, type_, data in batch)


async def from_store(registry: RegistryClient, session_id: str, after: int) -> AsyncIterator[bytes]:
    """Frames of a session's stored events (no turn running)."""
    for e in await registry.list_events(session_id, after, None):
        yield frame(e.seq, e.type, e.data)
