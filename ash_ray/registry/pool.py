"""Session workers: how they are placed, started, and kept warm before a session needs one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ash_ray.config import Settings
from ash_ray.errors import Unavailable
from ash_ray.handles import WorkerClient
from ash_ray.models import new_id
from ash_ray.names import actor_name
from ash_ray.registry.rayops import GONE, RayOps

logger = logging.getLogger(__name__)

# A worker that cannot start in this time is not coming (no node can place it).
READY_TIMEOUT_S = 120.0
REFILL_DELAY_S = 0.25

Worker = tuple[str, WorkerClient]  # (sandbox id, its actor)


class Placement:
    """Ray options of a session worker, from the settings and what the cluster declares."""

    def __init__(self, settings: Settings, ray_ops: RayOps) -> None:
        self.settings = settings
        self.ray = ray_ops
        self.slots_total = 0.0

    async def refresh(self) -> None:
        resources = await self.ray.cluster_resources()
        self.slots_total = float(resources.get(self.settings.session_slot_resource, 0.0))

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
        avail = await self.ray.available_resources()
        need_mem = self.settings.session_memory_mb * 1024 * 1024
        return avail.get("CPU", 0.0) + 1e-9 >= self.settings.session_num_cpus and (
            not need_mem or avail.get("memory", 0.0) >= need_mem
        )


class WorkerPool:
    """Pre-started, unbound workers; refilled in the background up to ``warm_pool_size``."""

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
        self._refill: asyncio.Task[None] | None = None

    async def spawn(self, sandbox_id: str | None = None) -> Worker:
        """Start a worker and wait until it answers; Unavailable when it cannot be placed."""
        sid = sandbox_id or new_id()
        worker = await self.ray.spawn(sid, await self.placement.options(sid))
        try:
            await asyncio.wait_for(worker.ready(), READY_TIMEOUT_S)
        except GONE as exc:
            await self.ray.kill(worker)
            raise Unavailable(
                f"a session worker could not start ({type(exc).__name__}); "
                "check the cluster's free CPU/memory/ash_session_slot resources"
            ) from None
        return sid, worker

    def take(self) -> Worker | None:
        worker = self.idle.pop() if self.idle else None
        self.refill_soon(delay_s=REFILL_DELAY_S)
        return worker

    def refill_soon(self, delay_s: float = 0.0) -> None:
        if self._refill is None or self._refill.done():
            self._refill = asyncio.create_task(self._fill(delay_s))

    async def _fill(self, delay_s: float = 0.0) -> None:
        # Starting a worker process eats a core for a while: let the request that took
        # the pooled worker answer first.
        await asyncio.sleep(delay_s)
        while len(self.idle) + self.warming < self.settings.warm_pool_size:
            if not await self.placement.has_room(self.live_workers()):
                return
            self.warming += 1
            try:
                self.idle.append(await self.spawn())
            except Exception:
                logger.warning("warm pool refill failed; will retry on next use", exc_info=True)
                return
            finally:
                self.warming -= 1

    async def drain(self) -> None:
        idle, self.idle = self.idle, []
        await asyncio.gather(*(self.ray.kill(worker) for _sid, worker in idle))
