"""The Store protocol: the source of truth that outlives every Ray cluster."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ash_ray.models import (
    DEFAULT_TENANT,
    AgentRecord,
    AgentVersionRecord,
    EventRecord,
    MessageRecord,
    QueuedTurn,
    SessionRecord,
    UsageRecord,
    WriteBatch,
)
from ash_ray.records import AttachmentRecord, LogLine
from ash_ray.tenants import ApiKeyRecord, CredentialRecord


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

    # agents: a name is unique per tenant
    async def upsert_agent(
        self, name: str, path: str, tenant: str = DEFAULT_TENANT
    ) -> AgentRecord:
        """Insert, or bump ``version`` and ``path``/``updated_at`` of an existing agent."""

    async def get_agent(self, name: str, tenant: str = DEFAULT_TENANT) -> AgentRecord | None: ...

    async def list_agents(self, tenant: str = DEFAULT_TENANT) -> list[AgentRecord]: ...

    async def delete_agent(self, name: str, tenant: str = DEFAULT_TENANT) -> bool: ...

    # agent archives (tar.gz of the files, one per agent version) and Ash's versions
    # (ash_ray/store/agent_data.py); the archive and version methods take the
    # tenant-qualified name (``_rows.tenant_name``) as ``name``
    async def save_agent(
        self, name: str, path: str, archive: bytes, env: dict[str, str] | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> AgentRecord:
        """Insert at version 1 or bump the version, storing ``archive`` for it."""

    async def update_agent(
        self, name: str, *, env: dict[str, str] | None = None,
        config: dict[str, Any] | None = None, tenant: str = DEFAULT_TENANT,
    ) -> AgentRecord | None: ...

    async def put_agent_archive(self, name: str, version: int, archive: bytes) -> str: ...

    async def agent_archive_sha(self, name: str, version: int) -> str | None: ...

    async def get_agent_archive(self, name: str, version: int) -> bytes | None: ...

    async def delete_agent_data(self, name: str) -> None: ...

    async def list_agent_versions(self, name: str) -> list[AgentVersionRecord]: ...

    async def get_agent_version(self, name: str, ref: str) -> AgentVersionRecord | None: ...

    async def active_agent_version(self, name: str) -> AgentVersionRecord | None: ...

    async def create_agent_version(
        self, name: str, *, title: str | None, system_prompt: str | None,
        release_notes: str | None, knowledge_files: list[str] | None,
    ) -> AgentVersionRecord: ...

    async def update_agent_version(
        self, version_id: str, fields: dict[str, Any]
    ) -> AgentVersionRecord | None: ...

    async def delete_agent_version(self, version_id: str) -> bool: ...

    async def activate_agent_version(self, name: str, version_id: str) -> None: ...

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
        tenant: str | None = None,
    ) -> list[SessionRecord]:
        """Newest first; ``tenant=None``: every tenant's (the registry's own scans)."""

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

    # api keys (hashes only) and credentials (sealed), always filtered by tenant
    async def add_api_key(self, rec: ApiKeyRecord) -> None: ...

    async def find_api_key(self, key_hash: str) -> ApiKeyRecord | None: ...

    async def list_api_keys(self, tenant: str) -> list[ApiKeyRecord]: ...

    async def delete_api_key(self, key_id: str, tenant: str) -> bool: ...

    async def add_credential(self, rec: CredentialRecord) -> None: ...

    async def list_credentials(self, tenant: str) -> list[CredentialRecord]: ...

    async def use_credential(self, credential_id: str, tenant: str) -> CredentialRecord | None:
        """The credential with ``last_used_at`` bumped; None if the tenant has no such."""

    async def delete_credential(self, credential_id: str, tenant: str) -> bool: ...

    # workspace snapshots (tar.gz bytes)
    async def put_snapshot(self, session_id: str, data: bytes) -> None: ...

    async def get_snapshot(self, session_id: str) -> bytes | None: ...

    async def delete_snapshot(self, session_id: str) -> None: ...

    # attachments (bytes next to snapshots: in the database, or files under the data dir)
    async def put_attachment(self, record: AttachmentRecord, data: bytes) -> None: ...

    async def get_attachment(self, attachment_id: str) -> AttachmentRecord | None: ...

    async def read_attachment(self, attachment_id: str) -> bytes | None: ...

    async def list_attachments(self, session_id: str) -> list[AttachmentRecord]: ...

    async def delete_attachment(self, attachment_id: str) -> bool: ...

    # session logs (tool output), bounded per session
    async def append_logs(self, session_id: str, lines: list[LogLine], keep: int) -> None: ...

    async def list_logs(
        self, session_id: str, after: int = -1, limit: int = 10_000
    ) -> list[LogLine]: ...

    async def last_log_index(self, session_id: str) -> int:
        """The highest stored line index of the session, -1 when it has none."""

    # the turn queue (migration 5)
    async def put_turn(self, item: QueuedTurn) -> None:
        """Insert or update a queued (or running) message; committed on return."""

    async def delete_turn(self, session_id: str, message_id: str) -> None: ...

    async def list_turns(self, session_id: str) -> list[QueuedTurn]:
        """The session's queued and running messages, in order."""
