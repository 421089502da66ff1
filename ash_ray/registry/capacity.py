"""Capacity: a worker for one more session, from the warm pool or new, evicting if need be."""

from __future__ import annotations

import logging
import time

from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    stop_after_delay,
    wait_fixed,
)

from ash_ray.errors import AtCapacity
from ash_ray.registry.pool import Placement, Worker, WorkerPool
from ash_ray.registry.state import Core, Live

logger = logging.getLogger(__name__)

# How often a create that waits for a slot looks again (ASH_CAPACITY_WAIT_S bounds it).
ROOM_POLL_S = 0.2


class _NoRoom(Exception):
    """Every slot runs a turn right now."""


class Capacity:
    """Enforces ASH_MAX_SANDBOXES and the cluster's slots; owns the warm pool."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.placement = Placement(core.settings, core.ray)
        self.pool = WorkerPool(core.settings, self.placement, self.worker_count)
        core.retire = self._retire
        self.waiting = 0
        # Creates past make_room that have not tracked their session yet: they hold a slot
        # (concurrent creates would all see the same free one while a worker is submitted).
        self.reserved = 0

    def worker_count(self) -> int:
        """Every worker in the cluster: bound, pooled, or starting."""
        return len(self.core.live) + len(self.pool.idle) + self.pool.warming

    async def worker(self, sandbox_id: str | None = None) -> tuple[Worker, bool]:
        """A worker for a session (and whether the pool had it); AtCapacity after the wait.

        A new worker is only submitted, not waited for (its process takes seconds to
        start): the caller awaits ``pool.started`` in the background before binding it.
        """
        await self.make_room()  # returns holding a reserved slot
        try:
            pooled = self.pool.take()
            if pooled is not None:
                return pooled, True
            return await self.pool.spawn(sandbox_id, wait=False), False
        finally:
            # The caller tracks the session before its next await: the slot stays counted.
            self.reserved -= 1

    async def _retire(self, live: Live) -> None:
        """A released session's worker: back to the pool (or killed, see ``give_back``)."""
        rec, core = live.record, self.core
        reusable = bool(live.node_id) and not live.dead and core.accepting
        reusable = reusable and live.node_id not in core.draining_nodes
        await self.pool.give_back(rec.sandbox_id, live.worker, rec.id, reusable)

    async def make_room(self) -> None:
        """Reserve a slot for one more session (the caller releases ``reserved`` once it has
        tracked the session): evict the LRU idle one, or wait, or 503.

        While it waits (``ASH_CAPACITY_WAIT_S``) a session in its grace is spared; at the
        end of the wait it is evicted too, rather than answering 503: only sessions that
        run a turn or whose worker is still starting hold their slot (Ash's contract).
        """
        self.waiting += 1
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_delay(self.core.settings.capacity_wait_s),
                wait=wait_fixed(ROOM_POLL_S),
                retry=retry_if_exception_type(_NoRoom),
            ):
                with attempt:
                    await self._room_or_evict(spare_fresh=True)
        except RetryError:
            try:
                await self._room_or_evict(spare_fresh=False)
            except _NoRoom:
                raise AtCapacity(await self._full_reason()) from None
        finally:
            self.waiting -= 1

    @property
    def limit(self) -> int:
        return self.placement.session_limit

    async def _full_reason(self) -> str:
        """Why there is no room, with the numbers that decided it."""
        live = self.core.live
        running = sum(1 for lv in live.values() if lv.running)
        starting = sum(1 for lv in live.values() if not lv.node_id and not lv.running)
        why = f"{len(live)} live sessions of at most {self.limit}, {running} running a turn"
        if starting:
            why += f", {starting} starting"
        if len(live) < self.limit:
            why += "; " + await self.placement.describe_room(self.worker_count())
        return f"no room for another session ({why}); retry later"

    async def _room_or_evict(self, spare_fresh: bool) -> None:
        def free() -> bool:
            return len(self.core.live) + self.reserved < self.limit

        while True:
            # free() again after the await: another create may have taken the slot.
            room = free() and bool(
                self.pool.idle or await self.placement.has_room(self.worker_count())
            )
            if room and free():
                self.reserved += 1
                return
            if not await self._evict_one(spare_fresh):
                raise _NoRoom

    async def _evict_one(self, spare_fresh: bool) -> bool:
        if await self.pool.evict_idle():
            return True
        # A session whose worker is still starting is not idle: its first message is
        # usually on its way (a create answers before the worker exists). Evicting it
        # would waste the start, and creates competing for slots would evict each other.
        # While a create may still wait, the same holds for a few seconds after its create
        # or resume (ASH_EVICT_GRACE_S): ``spare_fresh``.
        # The worker has the last word: one that has just started a turn (the registry
        # has not heard yet) refuses, and the next LRU one is asked.
        refused: set[str] = set()
        while idle := self._idle(refused, spare_fresh):
            victim = min(idle, key=lambda lv: lv.record.last_active_at)
            logger.info("evicting idle session %s to make room", victim.record.id)
            async with victim.lock:  # a concurrent create picks another one
                if await self.core.release_idle(victim):
                    return True
            refused.add(victim.record.id)
        return False

    def _idle(self, refused: set[str], spare_fresh: bool) -> list[Live]:
        now = time.monotonic()
        return [
            lv for lv in self.core.live.values()
            if lv.node_id and not lv.running and not lv.lock.locked()
            and not (spare_fresh and lv.fresh_until > now) and lv.record.id not in refused
        ]  # fmt: skip

    def figures(self) -> dict[str, int]:
        """The ``pool`` object of /health (Ash's names)."""
        live = self.core.live
        stats = self.core.stats
        running = sum(1 for lv in live.values() if lv.running)
        return {
            "total": self.worker_count(),
            "cold": 0,
            "warming": self.pool.warming,
            "warm": len(self.pool.idle) + len(live) - running,
            "waiting": self.waiting,
            "running": running,
            "maxCapacity": self.limit,
            "resumeWarmHits": stats.warm_hits,
            "resumeColdHits": stats.cold_hits,
            "preWarmHits": stats.pre_warm_hits,
        }
