"""Following a session's event log: the one wait loop behind every streaming call."""

from __future__ import annotations

from collections.abc import AsyncIterator

from ash_ray.handles import Event
from ash_ray.session.events import EventLog

# How long ``ask``/``ask_stream`` wait between checks when no heartbeat is asked for.
QUIET_WAIT_S = 30.0
# A turn's last events before its ``done``, which follows once the turn is saved.
_LAST = frozenset({"turn_complete", "error"})


async def follow(
    log: EventLog, after: int, heartbeat_s: float, turn_start: int = 0
) -> AsyncIterator[list[Event]]:
    """Batches of events with seq > after, ending with the batch that holds the ``done``
    of the turn that starts at ``turn_start`` (earlier turns' ``done`` pass: a replay
    from an older event runs through them).

    An empty batch means ``heartbeat_s`` passed without an event (SSE sends a ping).
    A batch that ends the turn waits (up to ``heartbeat_s``) for the ``done`` saving it
    brings: one batch for both, one Ray item and one network write fewer a turn.
    """
    seen = after
    while True:
        batch = await log.wait(seen, heartbeat_s)
        if batch and batch[-1][1] in _LAST:
            batch += await log.wait(batch[-1][0], heartbeat_s)
        # Cut at ``done``: a queued turn may have started right after it.
        end = next(
            (i for i, event in enumerate(batch) if event[1] == "done" and event[0] >= turn_start),
            None,
        )
        if end is not None:
            yield batch[: end + 1]
            return
        yield batch
        if batch:
            seen = batch[-1][0]


async def events(log: EventLog, after: int) -> AsyncIterator[Event]:
    """The events of :func:`follow` one by one, up to and including ``done``."""
    async for batch in follow(log, after, QUIET_WAIT_S):
        for event in batch:
            yield event
            if event[1] == "done":
                return
