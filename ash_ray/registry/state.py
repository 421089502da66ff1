"""What the registry's services share: live sessions, per-session locks, the store."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from ash_ray.config import Settings
from ash_ray.errors import Conflict, SessionNotFound, Unavailable
from ash_ray.handles import WorkerClient
from ash_ray.lifecycle_events import cold_event
from ash_ray.models import QueuedTurn, SessionRecord, WriteBatch, utcnow
from ash_ray.registry.rayops import RayOps
from ash_ray.registry.stats import RegistryStats
from ash_ray.registry.writer import WriteBehind
from ash_ray.store.base import Store

logger = logging.getLogger(__name__)

LIVE_STATUSES = ("starting", "active", "paused")


@dataclass
class Live:
    """A session that has a worker right now."""

    record: SessionRecord
    worker: WorkerClient
    running: bool = False
    node_id: str = ""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Set by the death watch: the worker process is gone.
    dead: bool = False
    # A status the registry set without waiting for the worker; its flushes follow it.
    pending_status: str | None = None
    # Not evicted before this time.monotonic() (just created or resumed) unless it ran a turn.
    fresh_until: float = 0.0
    # Set while a release (pause, stop, eviction, sweep) runs; set() once it is over.
    releasing: asyncio.Event | None = None


class Locks:
    """One lock per session while someone holds or waits for it; dropped after."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._locks)

    def locked(self, session_id: str) -> bool:
        lock = self._locks.get(session_id)
        return lock is not None and lock.locked()

    @contextlib.asynccontextmanager
    async def hold(self, session_id: str, wait: bool = True) -> AsyncIterator[None]:
        """Hold the session's lock; with ``wait=False`` a held lock is a Conflict."""
        if not wait and self.locked(session_id):
            raise Conflict(
                f"session {session_id} is changing state in another call; retry",
                session_id=session_id,
            )
        lock = self._locks.setdefault(session_id, asyncio.Lock())
        self._users[session_id] = self._users.get(session_id, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[session_id] -= 1
            if not self._users[session_id]:
                del self._users[session_id], self._locks[session_id]


class Core:
    """Settings, store, write-behind, stats, Ray and the live index: what every service uses."""

    def __init__(
        self, settings: Settings, store: Store, ray_ops: RayOps, stats: RegistryStats
    ) -> None:
        self.settings = settings
        self.store = store
        self.ray = ray_ops
        self.stats = stats
        self.writer = WriteBehind(store, settings.store_flush_ms)
        self.live: dict[str, Live] = {}
        self.locks = Locks()
        self.accepting = True
        self._background: set[asyncio.Task[None]] = set()
        # Called when a tracked worker dies (set by the recovery service).
        self.on_lost: Callable[[Live], Awaitable[None]] | None = None
        # Takes a released session's worker back (set by capacity: to the warm pool).
        self.retire: Callable[[Live], Awaitable[None]] = self._kill
        self.draining_nodes: set[str] = set()

    async def _kill(self, live: Live) -> None:
        await self.ray.kill(live.worker)

    def start(self) -> None:
        self.writer.start()

    async def close(self) -> None:
        """Stop the background work (the registry's process ends anyway; tests call it)."""
        tasks = [*self._background, *self.writer.tasks()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` unawaited, holding a reference until it ends."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def submit(self, *sessions: SessionRecord, batch: WriteBatch | None = None) -> None:
        batch = batch or WriteBatch()
        batch.sessions.extend(sessions)
        await self.writer.submit(batch)

    async def flush(self) -> None:
        await self.writer.flush()

    async def record_of(self, session_id: str) -> SessionRecord:
        """The session's newest record (the live one, else the store's); 404 if unknown."""
        if session_id in self.live:
            return self.live[session_id].record
        rec = await self.store.get_session(session_id)
        if rec is None:
            raise SessionNotFound(f"session {session_id} does not exist", session_id=session_id)
        return rec

    async def put_turn(self, item: QueuedTurn) -> None:
        """Store a queued or running message; a running one marks its session busy."""
        self.note_turn(item)
        await self.store.put_turn(item)

    def note_turn(self, item: QueuedTurn) -> None:
        live = self.live.get(item.session_id)
        if live is not None and item.state == "running":
            # Not evictable from now on; the worker's later flushes say when it ends.
            live.running, live.fresh_until = True, 0.0

    async def record(self, batch: WriteBatch, stats: dict[str, Any]) -> None:
        """A worker's flush: its record (a status set here without waiting for the worker
        wins until the worker carries it) and whether it runs a turn; then the store."""
        for i, rec in enumerate(batch.sessions):
            live = self.live.get(rec.id)
            if live is None:
                continue
            if live.pending_status is not None:
                if rec.status == live.pending_status:
                    live.pending_status = None
                else:  # a flush sent before the worker heard of the new status
                    rec = batch.sessions[i] = rec.model_copy(
                        update={"status": live.pending_status}
                    )
            live.record = rec
            if "running" in stats:
                live.running = bool(stats["running"])
        for item in batch.turns:  # a turn that starts running travels in the flush
            self.note_turn(item)
        await self.writer.submit(batch)

    def check_accepting(self) -> None:
        if not self.accepting:
            raise Unavailable("ash-ray is shutting down; retry on another instance")

    async def set_cold_status(self, rec: SessionRecord, status: str) -> SessionRecord:
        """The status of a session no worker numbers, with its ``lifecycle`` event."""
        new = rec.model_copy(update={"status": status, "last_active_at": utcnow()})
        new, event = cold_event(new, status)
        await self.submit(new, batch=WriteBatch(events=[event]))
        return new

    def track(self, live: Live) -> None:
        """Index a live session and watch its worker: a death is known without a probe."""
        self.live[live.record.id] = live

        async def watch() -> None:
            with contextlib.suppress(Exception):
                await live.worker.watch()
            live.dead = True
            if self.on_lost is not None and self.live.get(live.record.id) is live:
                await self.on_lost(live)  # not when the registry released it itself

        self.background(watch())

    async def release(self, live: Live, status: str) -> SessionRecord:
        """Save and snapshot a session, then retire its worker: the session goes cold."""
        rec = await self._release(live, status, idle_only=False)
        assert rec is not None  # only an idle-only release is refused
        return rec

    async def release_idle(self, live: Live, status: str = "paused") -> bool:
        """:meth:`release` for an eviction or the idle sweep, which go by ``live.running``.
        That lags the worker, which refuses when a turn runs, waits or is finishing there:
        False, the session stays live, and the worker's flush before its answer has
        marked it running (:meth:`record`)."""
        return await self._release(live, status, idle_only=True) is not None

    async def _release(self, live: Live, status: str, idle_only: bool) -> SessionRecord | None:
        """Release, announced to attaches meanwhile (:meth:`Lifecycle.attach` waits)."""
        live.releasing = done = asyncio.Event()
        try:
            return await self._release_worker(live, status, idle_only)
        finally:
            live.releasing = None
            done.set()

    async def _release_worker(
        self, live: Live, status: str, idle_only: bool
    ) -> SessionRecord | None:
        # The worker's release sets the status now (a refused one leaves it as it was).
        pending, live.pending_status = live.pending_status, None
        rec: SessionRecord | None
        try:
            if not live.node_id and not live.running:
                # Not bound yet (its process may still be starting): it holds nothing
                # the store lacks; waiting for it to start only to kill it would hold a
                # stop, or an eviction that a create waits for, for seconds.
                rec = await self.set_cold_status(live.record, status)
            elif idle_only:
                rec = await live.worker.release_idle(status)
            else:
                rec = await live.worker.release(status)
        except Exception:
            logger.warning("session %s: release failed; marking it %s", live.record.id, status)
            rec = await self.set_cold_status(live.record, status)
        if rec is None:
            live.pending_status = live.pending_status or pending
            logger.info("session %s runs a turn: not released", live.record.id)
            return None
        if self.live.get(live.record.id) is live:
            self.live.pop(live.record.id)
        await self.retire(live)
        return rec

    async def usable(self, live: Live) -> bool:
        """Whether the worker is alive; a dead one leaves the live index.

        A worker still starting or binding (no node yet), or slow to answer on a loaded
        node, is not dead: its death watch reports a real death. Dropping it on a probe
        timeout would orphan a session whose worker is about to serve it.
        """
        if not live.dead and not live.node_id:
            return True
        try:
            if not live.dead:
                async with asyncio.timeout(10):
                    await live.worker.ready()
                return True
        except TimeoutError:
            return True
        except Exception:
            pass
        if self.live.get(live.record.id) is live:
            self.live.pop(live.record.id)
        return False
