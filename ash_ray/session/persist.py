"""A session's persistence: new messages, events and usage go to the registry in batches.

The registry's write-behind commits them; what a client reads after ``done`` is committed
(see :meth:`Persister.flush`). A failed flush is kept and sent first next time; the store
ignores rows it already has.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from ash_ray.models import MessageRecord, QueuedTurn, UsageRecord, WriteBatch, new_id, utcnow
from ash_ray.session.state import Bound

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.02
FLUSH_RETRY_S = 0.5


class Sink(Protocol):
    """Where batches go (the registry; a fake in unit tests)."""

    def record(self, batch: WriteBatch, stats: dict[str, Any]) -> Any: ...


class Persister:
    def __init__(self, sink: Sink, session: Bound, running: Callable[[], bool]) -> None:
        self.sink = sink
        self.session = session
        self.running = running
        self.saved_messages = len(session.conversation)
        self.pending_usage: list[UsageRecord] = []
        self.pending_turns: list[QueuedTurn] = []
        self.pending_done: list[tuple[str, str]] = []
        self.turn_stats: dict[str, Any] = {}
        self.dirty = asyncio.Event()
        self._lock = asyncio.Lock()
        self._unsent: WriteBatch | None = None
        # What the registry last got of the session row and the running flag: a flush
        # with nothing new sends nothing (one Ray call and one transaction fewer).
        self._sent: tuple[Any, bool] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._flush_forever())

    async def close(self) -> None:
        """Stop the background flushes (after the last :meth:`flush`)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def turn_running(self, item: QueuedTurn) -> None:
        """Keep the running turn in the store with the next flush (a new worker
        continues it if this one is lost)."""
        self.pending_turns.append(item)

    def turn_done(self, session_id: str, message_id: str) -> None:
        """Remove the turn from the store's queue with the next flush; a running row not
        sent yet is not sent at all."""
        self.pending_turns = [t for t in self.pending_turns if t.message_id != message_id]
        self.pending_done.append((session_id, message_id))

    def soon(self) -> None:
        """Flush in the background, FLUSH_INTERVAL_S from now at the latest."""
        self.dirty.set()

    def _collect(self) -> tuple[WriteBatch, dict[str, Any]] | None:
        s = self.session
        now = utcnow()
        messages = [
            MessageRecord(
                id=new_id(), session_id=s.record.id, sequence=i + 1, role=msg["role"],
                content=msg["content"], created_at=now,
            )
            for i, msg in enumerate(s.conversation[self.saved_messages:], self.saved_messages)
        ]
        self.saved_messages = len(s.conversation)
        events = s.log.take_unsaved()
        usage, self.pending_usage = self.pending_usage, []
        turns, self.pending_turns = self.pending_turns, []
        done, self.pending_done = self.pending_done, []
        stats, self.turn_stats = {**self.turn_stats, "running": self.running()}, {}
        sent, self._sent = self._sent, (s.record, stats["running"])
        new = messages or events or usage or turns or done or len(stats) > 1
        if not new and sent == self._sent:
            return None  # the record is replaced, never changed in place: `==` is cheap
        session = s.record.model_copy(update={"last_seq": s.log.last_seq})
        batch = WriteBatch(
            sessions=[session], messages=messages, events=events, usage=usage,
            turns=turns, turns_done=done,
        )
        return batch, stats

    async def flush(self, wait: bool = True) -> None:
        """Send what is new; with ``wait``, return once the registry committed it."""
        async with self._lock:
            collected = self._collect()
            if collected is None and self._unsent is None:
                return
            batch, stats = collected or (WriteBatch(), {"running": self.running()})
            if self._unsent is not None:
                prior = self._unsent
                batch = WriteBatch(
                    sessions=batch.sessions or prior.sessions,
                    messages=prior.messages + batch.messages,
                    events=prior.events + batch.events,
                    usage=prior.usage + batch.usage,
                    turns=prior.turns + batch.turns,
                    turns_done=prior.turns_done + batch.turns_done,
                )
            self._unsent = batch
            call = self.sink.record(batch, stats)
            if not wait:
                call.ref()  # sent now, not awaited
                self._unsent = None
                return
            await call
            self._unsent = None

    async def save_now(self, what: str) -> None:
        """:meth:`flush` and wait; if the registry cannot take it now, log ``what`` was
        not saved and leave it to the background flusher (it keeps the batch)."""
        try:
            await self.flush(wait=True)
        except Exception:
            logger.warning("%s is not saved yet; the background flusher retries", what,
                           exc_info=True)
            self.soon()

    async def _flush_forever(self) -> None:
        """Flush FLUSH_INTERVAL_S after the first change since the last flush, with all
        that came meanwhile. A short turn's rows then ride in the saves it waits for
        anyway (its start, its end: :meth:`save_now`), and the background flush finds
        nothing left to send."""
        while True:
            await self.dirty.wait()
            await asyncio.sleep(FLUSH_INTERVAL_S)
            self.dirty.clear()
            try:
                await self.flush(wait=True)
            except Exception:
                logger.exception("background flush failed; retrying")
                self.dirty.set()
                await asyncio.sleep(FLUSH_RETRY_S)


