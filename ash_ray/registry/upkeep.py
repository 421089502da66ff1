"""Background upkeep and shutdown: the idle sweep, stale workspaces, the drain."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from ash_ray.handles import DrainResult
from ash_ray.models import utcnow
from ash_ray.registry.capacity import Capacity
from ash_ray.registry.jobs_watch import JobsWatch
from ash_ray.registry.recovery import Recovery
from ash_ray.registry.state import Core, Live

logger = logging.getLogger(__name__)

DESCRIBE_TIMEOUT_S = 5.0


class Upkeep:
    def __init__(
        self, core: Core, capacity: Capacity, recovery: Recovery, jobs: JobsWatch | None = None
    ) -> None:
        self.core = core
        self.capacity = capacity
        self.recovery = recovery
        self.jobs = jobs

    async def jobs_check(self) -> None:
        """Start the jobs actor when the Store holds unfinished queue items or eval runs."""
        if self.jobs is not None:
            await self.jobs.check_logged()

    async def sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.core.settings.sweep_interval_s)
            try:
                await self.sweep()
            except Exception:
                logger.exception("idle sweep failed")

    async def sweep(self, idle_timeout_s: float | None = None) -> int:
        """Idle sessions go cold; dead workers are noticed; old cold workspaces removed."""
        settings = self.core.settings
        now = utcnow()
        limit = settings.idle_timeout_ms / 1000 if idle_timeout_s is None else idle_timeout_s
        swept = 0
        for live in list(self.core.live.values()):
            if not await self.core.usable(live):
                await self.recovery.as_cold(live)
                continue
            idle = (now - live.record.last_active_at).total_seconds()
            if live.running or live.lock.locked() or idle < limit:
                continue
            async with live.lock:
                # Refused by a worker whose turn has just started (the registry's view lags).
                if await self.core.release_idle(live):
                    swept += 1
        keep = set(self.core.live)
        await asyncio.to_thread(remove_stale_workspaces, settings.workspaces_dir,
                                settings.cold_ttl_s, keep)
        self.capacity.pool.refill_soon()
        await self.jobs_check()
        return swept

    async def drain(self, timeout_s: float | None = None, node_id: str | None = None
                    ) -> DrainResult:
        """Graceful shutdown: pause and snapshot every live session (of one node, if given).

        Draining the whole cluster also refuses new work until the registry restarts.
        """
        if node_id is None:
            self.core.accepting = False
        else:
            self.core.draining_nodes.add(node_id)  # its workers are not reused
        timeout = self.core.settings.drain_timeout_s if timeout_s is None else timeout_s
        lives = [lv for lv in self.core.live.values() if node_id in (None, lv.node_id)]
        async with asyncio.timeout(timeout):
            results = await asyncio.gather(
                *(self.core.release(lv, "paused") for lv in lives), return_exceptions=True
            )
        if node_id is None:
            await self.capacity.pool.drain()
        await self.core.flush()
        failed = [str(r) for r in results if isinstance(r, BaseException)]
        return DrainResult(paused=len(lives) - len(failed), failed=failed)

    async def describe_all(self) -> list[dict[str, Any]]:
        """Every live worker's own view (for `ash-ray ps`)."""

        async def one(lv: Live) -> dict[str, Any]:
            try:
                async with asyncio.timeout(DESCRIBE_TIMEOUT_S):
                    view = await lv.worker.describe()
            except Exception as exc:
                return {"sessionId": lv.record.id, "error": type(exc).__name__}
            return {**view, "bound": bool(lv.node_id)}  # bound: evictable when idle

        return list(await asyncio.gather(*(one(lv) for lv in list(self.core.live.values()))))


def remove_stale_workspaces(root: Path, ttl_s: float, keep: set[str]) -> None:
    """Delete workspace folders untouched for ``ttl_s`` (blocking: run it in a thread)."""
    if not root.is_dir():
        return
    cutoff = time.time() - ttl_s
    for ws in root.iterdir():
        try:
            stale = ws.name not in keep and ws.stat().st_mtime < cutoff
        except FileNotFoundError:
            continue
        if stale:
            shutil.rmtree(ws, ignore_errors=True)
