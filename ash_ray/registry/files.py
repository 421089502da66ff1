"""The registry's part in session files, attachments and logs: the Store behind them.

Ingress replicas and workers hold no Store; they reach it through these calls. A cold
session's snapshot is replaced only while the session stays cold (under its lock), so a
write to a snapshot cannot race a resume that is restoring the old one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ash_ray.errors import Conflict, NotFound
from ash_ray.files_api import RegistryFilesApi
from ash_ray.records import AttachmentRecord, LogLine
from ash_ray.registry.state import Core


class SessionFiles:
    """Snapshots, attachments and logs of sessions, on the registry's Store."""

    def __init__(self, core: Core) -> None:
        self.core = core

    async def get_snapshot(self, session_id: str) -> bytes | None:
        await self.core.record_of(session_id)  # 404 for unknown sessions
        return await self.core.store.get_snapshot(session_id)

    async def replace_snapshot(self, session_id: str, data: bytes) -> None:
        async with self.core.locks.hold(session_id, wait=True):
            await self.core.record_of(session_id)
            if session_id in self.core.live:
                raise Conflict(
                    f"session {session_id} went live while its snapshot was being changed; retry"
                )
            await self.core.store.put_snapshot(session_id, data)

    async def put_attachment(self, record: AttachmentRecord, data: bytes) -> None:
        await self.core.record_of(record.session_id)
        await self.core.store.put_attachment(record, data)

    async def get_attachment(self, attachment_id: str) -> AttachmentRecord:
        record = await self.core.store.get_attachment(attachment_id)
        if record is None:
            raise NotFound(f"attachment {attachment_id} does not exist")
        return record

    async def read_attachment(self, attachment_id: str) -> tuple[AttachmentRecord, bytes]:
        record = await self.get_attachment(attachment_id)
        data = await self.core.store.read_attachment(attachment_id)
        if data is None:
            raise NotFound(f"attachment {attachment_id} does not exist")
        return record, data

    async def list_attachments(self, session_id: str) -> list[AttachmentRecord]:
        await self.core.record_of(session_id)
        return await self.core.store.list_attachments(session_id)

    async def delete_attachment(self, attachment_id: str) -> AttachmentRecord:
        record = await self.get_attachment(attachment_id)
        await self.core.store.delete_attachment(attachment_id)
        return record

    async def append_logs(self, session_id: str, lines: list[LogLine]) -> None:
        await self.core.store.append_logs(session_id, lines, self.core.settings.session_log_lines)

    async def list_logs(self, session_id: str, after: int, limit: int) -> list[LogLine]:
        await self.core.record_of(session_id)
        return await self.core.store.list_logs(session_id, after, limit)

    async def last_log_index(self, session_id: str) -> int:
        return await self.core.store.last_log_index(session_id)


class RegistryFiles:
    """Mixin of the registry actor: its remote methods of :class:`RegistryFilesApi`."""

    if TYPE_CHECKING:
        async def _ready(self) -> Any: ...

    async def _files(self) -> SessionFiles:
        return SessionFiles((await self._ready()).core)

    async def get_snapshot(self, session_id: str) -> bytes | None:
        return await (await self._files()).get_snapshot(session_id)

    async def replace_snapshot(self, session_id: str, data: bytes) -> None:
        await (await self._files()).replace_snapshot(session_id, data)

    async def put_attachment(self, record: AttachmentRecord, data: bytes) -> None:
        await (await self._files()).put_attachment(record, data)

    async def get_attachment(self, attachment_id: str) -> AttachmentRecord:
        return await (await self._files()).get_attachment(attachment_id)

    async def read_attachment(self, attachment_id: str) -> tuple[AttachmentRecord, bytes]:
        return await (await self._files()).read_attachment(attachment_id)

    async def list_attachments(self, session_id: str) -> list[AttachmentRecord]:
        return await (await self._files()).list_attachments(session_id)

    async def delete_attachment(self, attachment_id: str) -> AttachmentRecord:
        return await (await self._files()).delete_attachment(attachment_id)

    async def append_logs(self, session_id: str, lines: list[LogLine]) -> None:
        await (await self._files()).append_logs(session_id, lines)

    async def list_logs(self, session_id: str, after: int, limit: int) -> list[LogLine]:
        return await (await self._files()).list_logs(session_id, after, limit)

    async def last_log_index(self, session_id: str) -> int:
        return await (await self._files()).last_log_index(session_id)


def _conforms(registry: RegistryFiles) -> RegistryFilesApi:
    return registry  # mypy: every method the clients call, typed alike
