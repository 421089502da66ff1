"""The ``lifecycle`` events of a session's log: who numbers them, and reading past them.

Ash's timeline has ``lifecycle`` entries: ``created {agentName, model}``, ``paused``,
``stopped``, ``ended``, ``forked {parentSessionId}`` and ``resumed {path: warm|cold,
source}``. They are stored as events of type ``lifecycle`` (``data = {action, ...}``) in
the session's one numbered log, between turns, so the timeline keeps their order.

The log has one numbering owner at a time. A bound worker emits them itself
(``set_status``/``release``). With no worker bound (create, cold resume and fork before
the bind; pause, stop and end of a cold session) the registry writes the event, numbered
``last_seq + 1``, in the same write as the record that moves ``last_seq`` on.

A lifecycle event never belongs to a turn: whether the log leaves a turn open is decided
by the newest event that is not one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ash_ray.models import EventRecord, SessionRecord, utcnow

LIFECYCLE = "lifecycle"
# Events read per step when looking back past lifecycle events for a turn's last event.
WINDOW = 32
# Numbers left unused after a worker lost mid-turn, by whoever numbers next (the
# session's next worker, or the registry closing the turn): more than the lost worker can
# have numbered and shown a client but not saved (it saves every 20 ms and before its
# tools run; one save in flight, one pending).
UNSAVED_SEQ_MARGIN = 10_000

# (after, limit) -> events with seq > after, at most limit
ReadEvents = Callable[[int, int], Awaitable[list[EventRecord]]]


def entry(action: str, **data: Any) -> dict[str, Any]:
    """The stored ``data`` of a lifecycle event."""
    return {"action": action, **data}


def cold_event(
    rec: SessionRecord, action: str, **data: Any
) -> tuple[SessionRecord, EventRecord]:
    """A lifecycle event the registry writes for a session no worker numbers, and the
    record with ``last_seq`` moved on to it (write both in one batch)."""
    seq = rec.last_seq + 1
    event = EventRecord(
        session_id=rec.id, seq=seq, type=LIFECYCLE, data=entry(action, **data),
        created_at=utcnow(),
    )
    return rec.model_copy(update={"last_seq": seq}), event


def without_trailing_lifecycle(events: Sequence[EventRecord]) -> list[EventRecord]:
    """``events`` up to the newest one that is not a lifecycle event."""
    out = list(events)
    while out and out[-1].type == LIFECYCLE:
        out.pop()
    return out


async def turn_open(read: ReadEvents, last_seq: int) -> bool:
    """Whether the log up to ``last_seq`` leaves a turn open: its newest event that is
    not a lifecycle one exists and is not ``done``."""
    return await open_turn_tail(read, last_seq) is not None


async def open_turn_tail(read: ReadEvents, last_seq: int) -> list[EventRecord] | None:
    """The newest stored events of the turn the log leaves open (None: none is open).
    Reads back a window at a time; an empty window doubles the next (numbers left
    unused after a lost worker)."""
    top, size = last_seq, WINDOW
    while top > 0:
        after = max(0, top - size)
        window = [e for e in await read(after, top - after) if e.seq <= top]
        turn = without_trailing_lifecycle(window)
        if turn:
            return turn if turn[-1].type != "done" else None
        top = after
        size = size if window else size * 2
    return None


def prompt_stored(tail: list[EventRecord]) -> bool:
    """Whether an open turn's prompt reached the store: a message follows its
    ``session_start`` (the prompt is saved with the turn's first message event). A tail
    that does not reach back to the ``session_start`` is a long turn: saved long ago."""
    starts = [i for i, e in enumerate(tail) if e.type == "session_start"]
    return not starts or any(e.type == "message" for e in tail[starts[-1] + 1 :])
