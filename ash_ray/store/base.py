"""The Store protocol: the source of truth that outlives every Ray cluster."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ash_ray.models import (
    AgentRecord,
    EventRecord,
    MessageRecord,
    QueuedTurn,
    SessionRecord,
    UsageRecord,
    WriteBatch,
)


@runtime_checkable
class Store(Protocol):
    """Durable state. SQLite and Postgres implement it and pass the same tests.

    All methods are coroutines. ``write`` applies a whole batch in one transaction and
    retries transient connection failures; when it returns, the batch is durable.
    """

    kind: str

    async def open(self) -> None:
        """Connect and run pending migrations."""

    async def close(self) -> None:
        """Release connections; safe to call twice."""

    # agents
    async def upsert_agent(self, name: str, path: str) -> AgentRecord:
        """Insert, or bump ``version`` and ``path``/``updated_at`` of an existing agent."""

    async def get_agent(self, name: str) -> AgentRecord | None: ...

    async def list_agents(self) -> list[AgentRecord]: ...

    async def delete_agent(self, name: str) -> bool: ...

    # sessions, messages, events, usage
    async def write(self, batch: WriteBatch) -> None: ...

    async def get_session(self, session_id: str) -> SessionRecord | None: ...

    async def list_sessions(
        self,
        *,
        agent: str | None = None,
        status: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[SessionRecord]:
        """Newest first."""

    async def delete_session(self, session_id: str) -> bool:
        """Remove the session with its messages, events, usage and snapshot."""

    async def list_messages(
        self, session_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[MessageRecord]:
        """Messages with ``sequence > after`` in order; ``limit=None`` means all."""

    async def list_events(
        self, session_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[EventRecord]:
        """Events with ``seq > after`` in order."""

    async def list_usage(self, session_id: str | None = None) -> list[UsageRecord]: ...

    # workspace snapshots (tar.gz bytes)
    async def put_snapshot(self, session_id: str, data: bytes) -> None: ...

    async def get_snapshot(self, session_id: str) -> bytes | None: ...

    async def delete_snapshot(self, session_id: str) -> None: ...

    # the turn queue (migration 5)
    async def put_turn(self, item: QueuedTurn) -> None:
        """Insert or update a queued (or running) message; committed on return."""

    async def delete_turn(self, session_id: str, message_id: str) -> None: ...

    async def list_turns(self, session_id: str) -> list[QueuedTurn]:
        """The session's queued and running messages, in order."""
