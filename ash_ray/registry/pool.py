"""Session workers: how they are placed, started, and kept warm before a session needs one."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ash_ray.config import Settings
from ash_ray.errors import Unavailable
from ash_ray.handles import WorkerClient
from ash_ray.models import new_id
from ash_ray.names import actor_name
from ash_ray.registry.rayops import GONE, RayOps

logger = logging.getLogger(__name__)

# A worker that cannot start in this time is not coming (no node can place it)...
READY_TIMEOUT_S = 120.0
# ...plus this much for each worker starting beside it: they share the node's cores, and
# a burst of 50 on 2 cores took 4 minutes to start (each imports the SDK, ~3 s of CPU).
READY_PER_START_S = 10.0
REFILL_DELAY_S = 0.25
# What a live session worker takes (RSS measured by benchmarks/memory.py, rounded up):
# the default session limit is the cluster's memory over this.
SESSION_MEMORY_GUESS_MB = 200
# How long a view of the cluster's resources is used before asking Ray again.
RESOURCE_TTL_S = 0.5
# The create rate the pool follows is counted over this window.
DEMAND_WINDOW_S = 30.0

Worker = tuple[str, WorkerClient]  # (sandbox id, its actor)


class Placement:
    """Ray options of a session worker, from the settings and what the cluster declares."""

    def __init__(self, settings: Settings, ray_ops: RayOps) -> None:
        self.settings = settings
        self.ray = ray_ops
        self.slots_total = 0.0
        self.memory_total = 0.0  # bytes of Ray's ``memory`` resource in the cluster
        self.cpus_total = 0.0
        self._views: dict[str, tuple[float, asyncio.Future[dict[str, float]]]] = {}

    async def _view(self, kind: str) -> dict[str, float]:
        """Ray's cluster or available resources, fetched at most once per RESOURCE_TTL_S
        however many creates ask (a burst of 50 queued 200 GCS calls on a few threads)."""
        now = time.monotonic()
        seen = self._views.get(kind)
        if seen is None or now - seen[0] > RESOURCE_TTL_S or _failed(seen[1]):
            ray = self.ray
            fetch = ray.cluster_resources if kind == "cluster" else ray.available_resources
            seen = (now, asyncio.ensure_future(fetch()))
            self._views[kind] = seen
        return dict(await asyncio.shield(seen[1]))

    async def refresh(self) -> None:
        resources = await self._view("cluster")
        self.slots_total = float(resources.get(self.settings.session_slot_resource, 0.0))
        self.memory_total = float(resources.get("memory", 0.0))
        self.cpus_total = float(resources.get("CPU", 0.0))

    @property
    def session_limit(self) -> int:
        """ASH_MAX_SANDBOXES, or when 0 what the cluster's memory holds."""
        if self.settings.max_sandboxes:
            return self.settings.max_sandboxes
        per_session = (self.settings.session_memory_mb or SESSION_MEMORY_GUESS_MB) * 2**20
        return max(1, int(self.memory_total // per_session)) if self.memory_total else 100

    @property
    def uses_slots(self) -> bool:
        return self.slots_total > 0

    async def options(self, sandbox_id: str) -> dict[str, Any]:
        # Slotted nodes may join after the registry started (a worker group scaling up).
        await self.refresh()
        s = self.settings
        opts: dict[str, Any] = {
            "name": actor_name(sandbox_id),
            "namespace": s.namespace,
            "lifetime": "detached",
            "max_restarts": 0,
            "max_concurrency": 1000,
            "num_cpus": s.session_num_cpus,
            # Ray records every actor call as task events and sends them to the GCS (the
            # dashboard's task list): for a session, thousands of calls an hour, each
            # paid for in the worker, the caller and the GCS. Serve turns them off for its
            # replicas too. The actors are still listed, with their state and logs.
            "enable_task_events": False,
        }
        if s.session_memory_mb:
            opts["memory"] = s.session_memory_mb * 1024 * 1024
        if self.uses_slots:
            opts["resources"] = {s.session_slot_resource: 1}
        return opts

    async def has_room(self, live_workers: int) -> bool:
        """Whether one more worker can be placed now (slots when declared, else CPU/memory)."""
        await self.refresh()
        if self.uses_slots:
            return live_workers < self.slots_total
        avail = await self._view("available")
        need_mem = self.settings.session_memory_mb * 1024 * 1024
        return avail.get("CPU", 0.0) + 1e-9 >= self.settings.session_num_cpus and (
            not need_mem or avail.get("memory", 0.0) >= need_mem
        )

    async def describe_room(self, live_workers: int) -> str:
        """What the cluster has free against what a session worker needs (for a 503)."""
        if self.uses_slots:
            return (f"{live_workers} workers hold {self.slots_total:g} "
                    f"{self.settings.session_slot_resource} slots")
        avail = await self._view("available")
        s = self.settings
        return (
            f"the cluster has {avail.get('CPU', 0.0):g} CPU and "
            f"{avail.get('memory', 0.0) / 2**20:.0f} MiB free, a session worker needs "
            f"{s.session_num_cpus:g} CPU and {s.session_memory_mb} MiB"
        )


def _failed(future: asyncio.Future[Any]) -> bool:
    return future.done() and (future.cancelled() or future.exception() is not None)


class Demand:
    """How many pooled workers the recent create rate needs: workers taken per second,
    less those given back by released sessions, times how long one takes to start,
    between ``warm_pool_size`` and ``warm_pool_max``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.takes: deque[float] = deque()
        self.returns: deque[float] = deque()  # released workers back in the pool
        self.start_s = 4.0  # a first guess; each started worker updates it

    def took(self) -> None:
        self.takes.append(time.monotonic())

    def returned(self) -> None:
        self.returns.append(time.monotonic())

    def started(self, seconds: float, per_core: float = 1.0) -> None:
        """A worker answered ``seconds`` after its start, while ``per_core`` starts (itself
        included) shared each core: a burst of 24 on 2 cores takes 12 times one start's
        time each, which is not how long the next pooled worker takes."""
        self.start_s = 0.7 * self.start_s + 0.3 * seconds / max(1.0, per_core)

    def target(self) -> int:
        horizon = time.monotonic() - DEMAND_WINDOW_S
        for times in (self.takes, self.returns):
            while times and times[0] < horizon:
                times.popleft()
        rate = max(0, len(self.takes) - len(self.returns)) / DEMAND_WINDOW_S
        base = self.settings.warm_pool_size
        return max(base, min(self.settings.warm_pool_max, math.ceil(rate * self.start_s)))


class WorkerPool:
    """Pre-started, unbound workers; refilled in the background to what the create rate
    needs (:class:`Demand`), at least ``warm_pool_size``."""

    def __init__(
        self,
        settings: Settings,
        placement: Placement,
        live_workers: Callable[[], int],
    ) -> None:
        self.settings = settings
        self.placement = placement
        self.ray = placement.ray
        self.live_workers = live_workers  # every worker in the cluster, bound or pooled
        self.idle: list[Worker] = []
        self.warming = 0
        self.starting = 0  # workers waited for by started(), pooled or not
        self.demand = Demand(settings)
        self.served: dict[str, int] = {}  # sessions served so far, by reused worker
        self._refill: asyncio.Task[None] | None = None
        self.closed = False

    async def spawn(self, sandbox_id: str | None = None, wait: bool = True) -> Worker:
        """Start a worker and (``wait``) until it answers; Unavailable when it cannot be
        placed. Without ``wait`` the actor is only submitted: calls queue in Ray until its
        process runs, and the caller awaits :meth:`started` where it can afford to."""
        sid = sandbox_id or new_id()
        worker = await self.ray.spawn(sid, await self.placement.options(sid))
        if wait:
            await self.started(worker)
        return sid, worker

    async def started(self, worker: WorkerClient) -> None:
        """Wait until a spawned worker answers; kill it and raise Unavailable if it never does."""
        t0 = time.monotonic()
        self.starting += 1
        sharing = self.starting  # starts that share the cores with this one, itself included
        try:
            timeout = READY_TIMEOUT_S + READY_PER_START_S * self.starting
            async with asyncio.timeout(timeout):
                await worker.ready()
        except GONE as exc:
            await self.ray.kill(worker)
            raise Unavailable(
                f"a session worker could not start ({type(exc).__name__}); "
                "check the cluster's free CPU/memory/ash_session_slot resources"
            ) from None
        finally:
            self.starting -= 1
            self.refill_soon()  # spares wait while the cores start workers sessions wait for
        cores = max(1.0, self.placement.cpus_total)
        self.demand.started(time.monotonic() - t0, max(sharing, self.starting + 1) / cores)

    async def give_back(
        self, sandbox_id: str, worker: WorkerClient, session_id: str, reusable: bool = True
    ) -> None:
        """A worker whose session was released: into the pool when it may serve another
        (``reusable``, ``worker_reuse``) and the pool has room, else killed. The worker
        forgets the session first, and refuses (False) when anything of it still runs."""
        served = self.served.get(sandbox_id, 0) + 1
        room = len(self.idle) + self.warming < self.settings.warm_pool_max
        if reusable and served < self.settings.worker_reuse and room:
            try:
                if await worker.unbind(session_id):
                    self.served[sandbox_id] = served
                    self.idle.append((sandbox_id, WorkerClient(worker.handle)))
                    self.demand.returned()  # churn refills itself: no process to start
                    return
            except Exception:
                logger.warning("worker %s could not be reused", sandbox_id, exc_info=True)
        await self.kill(sandbox_id, worker)

    async def kill(self, sandbox_id: str, worker: WorkerClient) -> None:
        """Kill a worker, and forget how many sessions it served."""
        self.served.pop(sandbox_id, None)
        await self.ray.kill(worker)

    async def evict_idle(self) -> bool:
        """Kill the oldest pooled worker (its slot is wanted); False when none is idle."""
        if not self.idle:
            return False
        await self.kill(*self.idle.pop(0))
        return True

    def reused(self, sandbox_id: str) -> bool:
        """Whether this pooled worker served a session before (its id is not a new one)."""
        return sandbox_id in self.served

    def take(self) -> Worker | None:
        self.demand.took()
        worker = self.idle.pop() if self.idle else None
        self.refill_soon(delay_s=REFILL_DELAY_S)
        return worker

    def refill_soon(self, delay_s: float = 0.0) -> None:
        if self.closed:
            return
        if self._refill is None or self._refill.done():
            self._refill = asyncio.create_task(self._fill(delay_s))

    async def _fill(self, delay_s: float = 0.0) -> None:
        # Starting a worker process eats a core for a while: let the request that took
        # the pooled worker answer first.
        await asyncio.sleep(delay_s)
        while (missing := self.demand.target() - len(self.idle) - self.warming) > 0:
            if self.closed:
                return
            if not await self.placement.has_room(self.live_workers()):
                return
            if self.starting >= max(1.0, self.placement.cpus_total):
                # Every core already starts a worker (a burst of creates missed the pool):
                # a spare started now would only slow down the ones sessions wait for.
                # The next start to finish calls this again.
                return
            # Ray starts a few worker processes at a time: ask for them together.
            batch = min(missing, 4)
            self.warming += batch
            try:
                results = await asyncio.gather(
                    *(self.spawn() for _ in range(batch)), return_exceptions=True
                )
            finally:
                self.warming -= batch
            started = [r for r in results if not isinstance(r, BaseException)]
            if self.closed:  # drained meanwhile
                await asyncio.gather(*(self.kill(sid, worker) for sid, worker in started))
                return
            self.idle.extend(started)
            if any(isinstance(r, BaseException) for r in results):
                logger.warning("warm pool refill failed; will retry on next use")
                return

    async def drain(self) -> None:
        """Kill the pooled workers, and start no more (the cluster drains)."""
        self.closed = True
        idle, self.idle = self.idle, []
        await asyncio.gather(*(self.kill(sid, worker) for sid, worker in idle))
