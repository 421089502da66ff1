"""What an ingress replica holds: settings, the registry client, live session clients."""

from __future__ import annotations

import time
from dataclasses import asdict, is_dataclass
from typing import Any

from pydantic import BaseModel
from ray.actor import ActorHandle

from ash_ray.config import Settings
from ash_ray.handles import Attached, RegistryClient, SessionClient
from ash_ray.models import EventRecord


class IngressContext:
    """Per-replica state. Stateless across replicas: the registry is the authority."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started_at = time.time()
        self.registry_client = RegistryClient(settings.namespace)
        # Route call sites not yet on the typed client (see LegacyRegistry).
        self.registry = LegacyRegistry(self.registry_client)
        # session id -> its worker; a stale entry is re-attached on use by SessionClient.
        self.sessions: dict[str, SessionClient] = {}

    async def session(self, session_id: str) -> SessionClient:
        """The live worker of a session (resumed by the registry when needed)."""
        client = self.sessions.get(session_id)
        if client is None:
            client = self.sessions[session_id] = await self.registry_client.session(session_id)
        return client

    async def live_session(self, session_id: str) -> SessionClient | None:
        """The session's worker if it has one now (no resume); 404 for unknown ids."""
        handle = await self.registry_client.live_handle(session_id)
        if handle is None:
            return None
        session = await self.registry_client.get_session(session_id)
        return SessionClient(self.registry_client, session, handle)

    async def worker(self, session_id: str, fresh: bool = False) -> ActorHandle:
        """Legacy: the raw actor handle of :meth:`session` (routes not yet moved)."""
        if fresh:
            self.forget(session_id)
        return (await self.session(session_id)).handle

    def forget(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)

    def uptime_s(self) -> float:
        return time.time() - self.started_at


class LegacyRegistry:
    """``ctx.registry.<method>.remote(...)`` with today's reply shapes, over the typed client.

    Kept so the route modules work unchanged until they call :class:`RegistryClient`
    (``ctx.registry_client``) themselves; then delete this class. Replies: records become
    their ``.public()`` dicts, events ``(seq, type, data, createdAt)``, an attach
    ``(session, handle)``.
    """

    def __init__(self, client: RegistryClient) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        class _Remote:
            @staticmethod
            async def remote(*args: Any, **kwargs: Any) -> Any:
                return _legacy(await method(*args, **kwargs))

        return _Remote


def _legacy(reply: Any) -> Any:
    if isinstance(reply, list):
        return [_legacy(r) for r in reply]
    if isinstance(reply, EventRecord):
        return reply.seq, reply.type, reply.data, reply.created_at.isoformat()
    if isinstance(reply, Attached):
        return reply.session.public(), reply.worker
    if isinstance(reply, BaseModel) and hasattr(reply, "public"):
        return reply.public()
    if is_dataclass(reply) and not isinstance(reply, type):
        return asdict(reply)
    return reply
