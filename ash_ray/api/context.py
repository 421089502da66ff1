"""What an ingress replica holds: settings, the registry handle, live session handles."""

from __future__ import annotations

import time
from typing import Any

import ray

from ash_ray.config import Settings
from ash_ray.names import REGISTRY_NAME


class IngressContext:
    """Per-replica state. Stateless across replicas: the registry is the authority."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started_at = time.time()
        self._registry: Any = None
        # session id -> worker handle; a stale entry fails on use and is dropped.
        self.handles: dict[str, Any] = {}

    @property
    def registry(self) -> Any:
        if self._registry is None:
            self._registry = ray.get_actor(REGISTRY_NAME, namespace=self.settings.namespace)
        return self._registry

    async def worker(self, session_id: str, fresh: bool = False) -> Any:
        """The live worker of a session (resumed by the registry when needed)."""
        if not fresh and session_id in self.handles:
            return self.handles[session_id]
        _public, handle = await self.registry.attach.remote(session_id)
        self.handles[session_id] = handle
        return handle

    def forget(self, session_id: str) -> None:
        self.handles.pop(session_id, None)

    def uptime_s(self) -> float:
        return time.time() - self.started_at
