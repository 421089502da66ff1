"""What an ingress replica holds: settings, the registry client, live session clients."""

from __future__ import annotations

import time

from ash_ray.config import Settings
from ash_ray.handles import RegistryClient, SessionClient
from ash_ray.jobs.client import JobsClient


class IngressContext:
    """Per-replica state. Stateless across replicas: the registry is the authority."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started_at = time.time()
        self.registry = RegistryClient(settings.namespace)
        self.jobs = JobsClient(settings.namespace, settings=settings)  # queue, usage, evals
        # session id -> its worker; a stale entry is re-attached on use by SessionClient.
        self.sessions: dict[str, SessionClient] = {}

    async def session(self, session_id: str) -> SessionClient:
        """The live worker of a session (resumed by the registry when needed)."""
        client = self.sessions.get(session_id)
        if client is None:
            client = self.sessions[session_id] = await self.registry.session(session_id)
        return client

    async def live_session(self, session_id: str) -> SessionClient | None:
        """The session's worker if it has one now (no resume); 404 for unknown ids."""
        handle = await self.registry.live_handle(session_id)
        if handle is None:
            return None
        session = await self.registry.get_session(session_id)
        return SessionClient(self.registry, session, handle)

    def forget(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)

    def uptime_s(self) -> float:
        return time.time() - self.started_at
