"""The numbered event log of one session: what SSE streams and re-attach read."""

from __future__ import annotations

import asyncio
from collections import deque

from ash_ray.actor_api import Event
from ash_ray.errors import WorkerReleasing
from ash_ray.models import EventRecord, utcnow


class EventLog:
    """Events with increasing sequence numbers and a wait-for-newer primitive.

    Only the newest ``capacity`` events stay in memory; older ones are in the store.
    """

    def __init__(self, session_id: str, last_seq: int = 0, capacity: int = 50_000) -> None:
        self.session_id = session_id
        self.last_seq = last_seq
        self._events: deque[Event] = deque(maxlen=capacity)
        # Set and replaced on every emit: waiters hold the one current when they started.
        self._new = asyncio.Event()
        self._unsaved: list[EventRecord] = []
        # Readers see events in sequence order only: one published while an older one
        # is held back (a ``done`` waiting for its save) waits for it.
        self._published = last_seq
        self._held: dict[int, Event] = {}
        self.closed = False

    def emit(self, type_: str, data: dict, publish: bool = True) -> Event:
        """Number an event and queue it for the store; readers see it now, or at
        :meth:`publish` (an event that must not be seen before it is saved)."""
        self.last_seq += 1
        event = (self.last_seq, type_, data)
        self._unsaved.append(
            EventRecord(
                session_id=self.session_id,
                seq=self.last_seq,
                type=type_,
                data=data,
                created_at=utcnow(),
            )
        )
        if publish:
            self.publish(event)
        return event

    def publish(self, event: Event) -> None:
        self._held[event[0]] = event
        if self._published + 1 not in self._held:
            return
        while self._published + 1 in self._held:
            self._published += 1
            self._events.append(self._held.pop(self._published))
        self._new.set()
        self._new = asyncio.Event()

    def skip(self, count: int) -> None:
        """Leave ``count`` numbers unused: a lost worker may have shown a client events it
        never saved, numbered after the store's last; the turn continued here must not
        reuse those numbers (a client following with ``Last-Event-ID`` would skip its
        events as seen). Readers of the events before the gap get them from the store
        (``since`` counts positions by number, so the memory holds no gap)."""
        assert not self._held, "skip() before any held event"
        self._events.clear()
        self.last_seq += count
        self._published = self.last_seq

    def take_unsaved(self) -> list[EventRecord]:
        out, self._unsaved = self._unsaved, []
        return out

    def oldest_seq(self) -> int:
        return self._events[0][0] if self._events else self.last_seq + 1

    def since(self, after: int, limit: int = 1000) -> list[Event]:
        top = self._events[-1][0] if self._events else 0  # the newest published
        if after >= top:
            return []
        start = max(0, len(self._events) - (top - after))
        return [self._events[i] for i in range(start, min(len(self._events), start + limit))]

    def close(self) -> None:
        """The session left this worker: readers get what is left, then WorkerReleasing
        (as from a worker gone: they follow the session to its next worker)."""
        self.closed = True
        self._new.set()

    async def wait(self, after: int, timeout_s: float, limit: int = 1000) -> list[Event]:
        """Events with seq > after; waits up to ``timeout_s`` for the first one."""
        ready = self.since(after, limit)
        if ready:
            return ready
        if not self.closed:
            try:
                async with asyncio.timeout(timeout_s):
                    await self._new.wait()
            except TimeoutError:
                return []
            ready = self.since(after, limit)
        if not ready and self.closed:
            raise WorkerReleasing(
                f"session {self.session_id} left this worker; attach again",
                session_id=self.session_id,
            )
        return ready
