"""Write-behind with group commit: many callers, one transaction per flush window.

A caller's ``submit`` returns once its rows are in a committed transaction, so what the
registry acknowledges is durable; concurrent callers share transactions, so the store
is not a bottleneck.
"""

from __future__ import annotations

import asyncio
import logging

from ash_ray.models import SessionRecord, WriteBatch
from ash_ray.store.base import Store

logger = logging.getLogger(__name__)


class WriteBehind:
    def __init__(self, store: Store, flush_ms: float) -> None:
        self.store = store
        self.flush_s = flush_ms / 1000
        self._pending = _Merged()
        self._waiters: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.rows_written = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def tasks(self) -> list[asyncio.Task[None]]:
        return [self._task] if self._task is not None else []

    async def submit(self, batch: WriteBatch) -> None:
        """Queue ``batch``; returns when it is committed (raises if the store gave up)."""
        if batch.empty():
            return
        self._pending.add(batch)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._wake.set()
        await fut

    async def flush(self) -> None:
        """Wait until everything submitted so far is committed."""
        if self._waiters:
            await asyncio.gather(*list(self._waiters), return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.flush_s:
                await asyncio.sleep(self.flush_s)
            merged, self._pending = self._pending, _Merged()
            waiters, self._waiters = self._waiters, []
            batch = merged.batch()
            try:
                await self.store.write(batch)
            except Exception as exc:
                logger.exception("store write failed; %d callers get the error", len(waiters))
                # Nothing acknowledged is lost: the rows go back to the head of the queue.
                merged.add(self._pending.batch())
                self._pending = merged
                for fut in waiters:
                    if not fut.done():
                        fut.set_exception(exc)
                self._wake.set()
                await asyncio.sleep(0.5)
                continue
            self.rows_written += len(batch.events) + len(batch.messages)
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)


class _Merged:
    """Batches merged: latest session row wins, rows of other kinds concatenate."""

    def __init__(self) -> None:
        self.sessions: dict[str, SessionRecord] = {}
        self.parts: list[WriteBatch] = []

    def add(self, batch: WriteBatch) -> None:
        for s in batch.sessions:
            self.sessions[s.id] = s
        self.parts.append(batch)

    def batch(self) -> WriteBatch:
        out = WriteBatch(sessions=list(self.sessions.values()))
        for part in self.parts:
            out.messages.extend(part.messages)
            out.events.extend(part.events)
            out.usage.extend(part.usage)
            out.turns.extend(part.turns)
            out.turns_done.extend(part.turns_done)
        return out
