"""After a crash: adopt the workers that outlived it, close the turns that did not.

A session whose worker or cluster died comes back ``paused`` and resumable (DESIGN
section 5); a turn it was running gets ``error`` and ``done`` events in its timeline, so
a client re-attaching sees it end. ``error`` is for sessions that cannot run at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ash_ray.lifecycle_events import (
    UNSAVED_SEQ_MARGIN,
    ReadEvents,
    open_turn_tail,
    prompt_stored,
    without_trailing_lifecycle,
)
from ash_ray.models import EventRecord, MessageRecord, SessionRecord, WriteBatch, new_id, utcnow
from ash_ray.registry.state import LIVE_STATUSES, Core, Live

logger = logging.getLogger(__name__)

PAGE = 500
WORKER_LOST = "the session worker died; resume to continue"
# A worker that does not answer in this time after a registry restart is not adopted.
ADOPT_TIMEOUT_S = 10.0


class Recovery:
    def __init__(self, core: Core) -> None:
        self.core = core
        # Lifecycle.resume, wired by the registry (lifecycle is built on top of this).
        self.resume: Callable[[str, bool], Awaitable[SessionRecord]] | None = None
        core.on_lost = self.worker_lost

    async def worker_lost(self, live: Live) -> None:
        """A worker died (process or node): continue its turn and queue on a new worker
        (``ASH_TURN_RECOVERY=continue``), else the session goes cold, ``paused``."""
        sid = live.record.id
        try:
            if await self._carry_on(sid):
                return
        except Exception:
            logger.exception("session %s: continuing on a new worker failed", sid)
        if self.core.live.get(sid) is live:
            await self.as_cold(live)

    async def _carry_on(self, session_id: str) -> bool:
        """Resume a session cold when it has a turn to continue or messages queued."""
        if self.core.settings.turn_recovery != "continue" or self.resume is None:
            return False
        if not await self.core.store.list_turns(session_id):
            return False
        await self.resume(session_id, True)
        logger.info("session %s: its lost worker's turn continues on a new worker", session_id)
        return True

    async def recover(self) -> None:
        """Adopt workers that outlived a registry restart; the rest become cold."""
        fixes = WriteBatch()
        for status in LIVE_STATUSES:
            for rec in await self._all_sessions(status):
                if await self._adopt(rec):
                    continue
                cold, closing = await self.closed_turn(rec, rec.last_seq, "paused")
                fixes.sessions.append(cold)
                fixes.events.extend(closing.events)
                fixes.messages.extend(closing.messages)
        await self.kill_orphans()
        await self.core.submit(batch=fixes)

    async def _adopt(self, rec: SessionRecord) -> bool:
        worker = await self.core.ray.find_worker(rec.sandbox_id)
        if worker is None:
            return False
        try:
            async with asyncio.timeout(ADOPT_TIMEOUT_S):
                await worker.ready()
            info = await worker.describe()
        except Exception:
            info = {}
        if info.get("bound") and info.get("sessionId") == rec.id:
            self.core.track(Live(
                rec, worker.scoped(rec.id), running=info["turnRunning"], node_id=info["nodeId"]
            ))
            return True
        if not info.get("bound"):  # one bound to another session is that one's to adopt
            await self.core.ray.kill(worker)
        return False

    async def _all_sessions(self, status: str) -> list[SessionRecord]:
        out: list[SessionRecord] = []
        while True:
            page = await self.core.store.list_sessions(status=status, limit=PAGE, offset=len(out))
            out.extend(page)
            if len(page) < PAGE:
                return out

    async def closed_turn(
        self, rec: SessionRecord, seen_seq: int, status: str
    ) -> tuple[SessionRecord, WriteBatch]:
        """The session with ``status``, and what ends a turn its worker left open: its
        ``error`` and ``done`` events, and its prompt when the worker was lost before it
        joined the stored conversation (nothing when the timeline already ends with
        ``done``). ``seen_seq``: the newest event a client saw, maybe newer than the
        store's."""
        seq = max(rec.last_seq, seen_seq)
        tail = await open_turn_tail(self._reader(rec.id), rec.last_seq)
        if seq == rec.last_seq and tail is None:
            return rec.model_copy(update={"status": status}), WriteBatch()
        # Past what the lost worker may have shown a client (this one, or another) unsaved:
        # the turn's end must not take the number of an event somebody already has.
        seq += UNSAVED_SEQ_MARGIN
        now = utcnow()
        events = [
            EventRecord(session_id=rec.id, seq=seq + 1, type="error",
                        data={"error": WORKER_LOST}, created_at=now),
            EventRecord(session_id=rec.id, seq=seq + 2, type="done",
                        data={"sessionId": rec.id}, created_at=now),
        ]
        prompt = None if tail is None or prompt_stored(tail) else await self._prompt(rec.id)
        closed = rec.model_copy(update={"status": status, "last_seq": seq + 2})
        return closed, WriteBatch(events=events, messages=[prompt] if prompt else [])

    async def _prompt(self, session_id: str) -> MessageRecord | None:
        """The prompt of the session's running turn, as the conversation's next message.

        The prompt is durable before its sender hears of it (the turn's running row), but
        joins the stored conversation with a later save; a worker lost in between leaves
        it only in that row, and the turn closed here would otherwise drop it."""
        running = [t for t in await self.core.store.list_turns(session_id) if t.state == "running"]
        if not running:
            return None
        stored = await self.core.store.list_messages(session_id)
        return MessageRecord(
            id=new_id(), session_id=session_id, role="user",
            sequence=stored[-1].sequence + 1 if stored else 1,
            content=running[0].prompt, created_at=utcnow(),
        )

    def _reader(self, session_id: str) -> ReadEvents:
        async def read(after: int, limit: int) -> list[EventRecord]:
            return await self.core.store.list_events(session_id, after=after, limit=limit)

        return read

    async def as_cold(self, live: Live) -> None:
        """A live session whose worker is gone: paused, its open turn closed."""
        if self.core.live.get(live.record.id) is live:
            self.core.live.pop(live.record.id)
        await self.core.flush()
        rec = await self.core.store.get_session(live.record.id) or live.record
        status = "paused" if rec.status in LIVE_STATUSES else rec.status
        cold, closing = await self.closed_turn(rec, rec.last_seq, status)
        await self.core.submit(cold, batch=closing)

    async def worker_failed(self, session_id: str, seen_seq: int) -> list[tuple]:
        """An ingress saw the worker die mid-stream: close the turn, pause the session.

        Returns the events that end the client's stream (also when another caller, such
        as the sweep, closed the turn first); none when the turn continues on a new
        worker (``ASH_TURN_RECOVERY=continue``), which the caller then follows.
        """
        live = self.core.live.get(session_id)
        if live is not None and await self.core.usable(live):
            return []
        if await self._carry_on(session_id):
            return []  # the caller follows the turn on the new worker
        await self.core.flush()
        rec = await self.core.store.get_session(session_id)
        if rec is None:
            return []
        if rec.last_seq > seen_seq:
            # (a lifecycle event after ``done``, such as ``paused``, is not the turn's)
            done = without_trailing_lifecycle(
                await self.core.store.list_events(session_id, after=seen_seq)
            )
            if done and done[-1].type == "done":
                return [(e.seq, e.type, e.data) for e in done]
        status = "paused" if rec.status in LIVE_STATUSES else rec.status
        cold, closing = await self.closed_turn(rec, seen_seq, status)
        await self.core.submit(cold, batch=closing)
        return [(e.seq, e.type, e.data) for e in closing.events]

    async def kill_orphans(self) -> None:
        """Unbound workers left by an earlier registry (its warm pool) hold slots: free them."""
        sandbox_ids = await self.core.ray.worker_sandbox_ids()
        if sandbox_ids is None:
            return
        known = {live.record.sandbox_id for live in self.core.live.values()}
        for sandbox_id in sandbox_ids:
            if sandbox_id not in known:
                worker = await self.core.ray.find_worker(sandbox_id)
                if worker is not None:
                    await self.core.ray.kill(worker)
