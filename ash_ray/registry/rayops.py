"""Every Ray call the registry makes, in one place, each off the registry's event loop.

``ray.get_actor``, ``ray.kill``, the state API and the resource views are synchronous GCS
round trips: made on the loop they stall every other call the registry serves (a capacity
wait polled them every 0.2 s). Here they run in a thread. The registry's services take a
:class:`RayOps` and never import ``ray`` for anything but exception types, so they run in
unit tests against a fake of this class (``tests/unit/fake_ray.py``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import ray
from ray.actor import ActorHandle

from ash_ray.config import Settings
from ash_ray.handles import WorkerClient
from ash_ray.names import actor_name, sandbox_of

logger = logging.getLogger(__name__)

# Errors that mean "that worker is not there (any more)".
GONE = (ValueError, TimeoutError, ray.exceptions.RayError)


class RayOps:
    """The registry's view of Ray: worker actors by name, kills, and free resources."""

    def __init__(self, settings: Settings, worker_cls: type) -> None:
        self.settings = settings
        self.worker_cls = worker_cls
        self._actor_cls: Any = None

    async def spawn(self, sandbox_id: str, options: dict[str, Any]) -> WorkerClient:
        """Create a session worker actor (it starts in the background)."""

        def create() -> ActorHandle:
            # One actor class for every worker: a new ray.remote() class is pickled and
            # exported to the GCS again on every spawn.
            if self._actor_cls is None:
                self._actor_cls = ray.remote(self.worker_cls)
            return self._actor_cls.options(**options).remote(self.settings, sandbox_id)

        return WorkerClient(await asyncio.to_thread(create))

    async def find_worker(self, sandbox_id: str) -> WorkerClient | None:
        """The named worker of ``sandbox_id``, None when there is none."""
        try:
            handle = await asyncio.to_thread(
                ray.get_actor, actor_name(sandbox_id), namespace=self.settings.namespace
            )
        except ValueError:
            return None
        return WorkerClient(handle)

    async def kill(self, worker: WorkerClient) -> None:
        """Kill a worker process at once (no restart); a dead one is fine."""
        try:
            await asyncio.to_thread(ray.kill, worker.handle)
        except GONE:
            pass

    async def worker_sandbox_ids(self) -> list[str] | None:
        """Sandbox ids of every live session worker actor; None without the state API."""

        def names() -> list[str]:
            from ray.util.state import list_actors

            actors = list_actors(
                filters=[("state", "=", "ALIVE"), ("ray_namespace", "=", self.settings.namespace)],
                limit=10_000,
                raise_on_missing_output=False,
            )
            return [sid for a in actors if (sid := sandbox_of(a.name or "")) is not None]

        try:
            return await asyncio.to_thread(names)
        except Exception:
            logger.info("state API unavailable; orphan workers not collected")
            return None

    async def cluster_resources(self) -> dict[str, float]:
        return dict(await asyncio.to_thread(ray.cluster_resources))

    async def available_resources(self) -> dict[str, float]:
        return dict(await asyncio.to_thread(ray.available_resources))
