"""The actors' methods for workspace files, snapshots, attachments and logs, typed.

The same pattern as :mod:`ash_ray.actor_api` and :mod:`ash_ray.handles`, for the
files/attachments/logs surface: :class:`RegistryFilesApi` and :class:`WorkerFilesApi`
declare the remote methods (the actors satisfy them, checked by mypy), and the mixins
:class:`RegistryFilesCalls` / :class:`WorkerFilesCalls` of the typed clients call through
them, so each method name is written once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar

from ash_ray.records import AttachmentRecord, LogLine

if TYPE_CHECKING:
    from ash_ray.calls import Call
    from ash_ray.session.files import FileInfo, WriteResult

P = ParamSpec("P")
T = TypeVar("T")


class RegistryFilesApi(Protocol):
    """The registry's methods for snapshots, attachments and logs."""

    async def get_snapshot(self, session_id: str) -> bytes | None: ...
    async def replace_snapshot(self, session_id: str, data: bytes) -> None: ...
    async def put_attachment(self, record: AttachmentRecord, data: bytes) -> None: ...
    async def get_attachment(self, attachment_id: str) -> AttachmentRecord: ...
    async def read_attachment(self, attachment_id: str) -> tuple[AttachmentRecord, bytes]: ...
    async def list_attachments(self, session_id: str) -> list[AttachmentRecord]: ...
    async def delete_attachment(self, attachment_id: str) -> AttachmentRecord: ...
    async def append_logs(self, session_id: str, lines: list[LogLine]) -> None: ...
    async def list_logs(self, session_id: str, after: int, limit: int) -> list[LogLine]: ...
    async def last_log_index(self, session_id: str) -> int: ...


class WorkerFilesApi(Protocol):
    """A session worker's methods on its live workspace and log."""

    async def files_list(self, include_hidden: bool) -> list[FileInfo]: ...
    async def file_read(self, path: str, max_bytes: int) -> tuple[bytes, FileInfo]: ...
    async def files_write(
        self, items: list[tuple[str, bytes]], target: str
    ) -> list[WriteResult]: ...
    async def file_delete(self, path: str) -> str: ...
    async def workspace_bundle(self) -> bytes: ...
    async def workspace_restore(self, data: bytes) -> int: ...
    async def logs(self, after: int, limit: int) -> list[LogLine]: ...


class _Calls:
    if TYPE_CHECKING:
        def _call(
            self,
            fn: Callable[Concatenate[Any, P], Awaitable[T]],
            *args: P.args,
            **kwargs: P.kwargs,
        ) -> Call[T]: ...


class RegistryFilesCalls(_Calls):
    """Mixin of :class:`~ash_ray.handles.RegistryClient`."""

    def get_snapshot(self, session_id: str) -> Call[bytes | None]:
        return self._call(RegistryFilesApi.get_snapshot, session_id)

    def replace_snapshot(self, session_id: str, data: bytes) -> Call[None]:
        return self._call(RegistryFilesApi.replace_snapshot, session_id, data)

    def put_attachment(self, record: AttachmentRecord, data: bytes) -> Call[None]:
        return self._call(RegistryFilesApi.put_attachment, record, data)

    def get_attachment(self, attachment_id: str) -> Call[AttachmentRecord]:
        return self._call(RegistryFilesApi.get_attachment, attachment_id)

    def read_attachment(self, attachment_id: str) -> Call[tuple[AttachmentRecord, bytes]]:
        return self._call(RegistryFilesApi.read_attachment, attachment_id)

    def list_attachments(self, session_id: str) -> Call[list[AttachmentRecord]]:
        return self._call(RegistryFilesApi.list_attachments, session_id)

    def delete_attachment(self, attachment_id: str) -> Call[AttachmentRecord]:
        return self._call(RegistryFilesApi.delete_attachment, attachment_id)

    def append_logs(self, session_id: str, lines: list[LogLine]) -> Call[None]:
        return self._call(RegistryFilesApi.append_logs, session_id, lines)

    def list_logs(self, session_id: str, after: int, limit: int) -> Call[list[LogLine]]:
        return self._call(RegistryFilesApi.list_logs, session_id, after, limit)

    def last_log_index(self, session_id: str) -> Call[int]:
        return self._call(RegistryFilesApi.last_log_index, session_id)


class WorkerFilesCalls(_Calls):
    """Mixin of :class:`~ash_ray.handles.WorkerClient` (a stale worker is re-attached)."""

    def files_list(self, include_hidden: bool) -> Call[list[FileInfo]]:
        return self._call(WorkerFilesApi.files_list, include_hidden)

    def file_read(self, path: str, max_bytes: int) -> Call[tuple[bytes, FileInfo]]:
        return self._call(WorkerFilesApi.file_read, path, max_bytes)

    def files_write(self, items: list[tuple[str, bytes]], target: str) -> Call[list[WriteResult]]:
        return self._call(WorkerFilesApi.files_write, items, target)

    def file_delete(self, path: str) -> Call[str]:
        return self._call(WorkerFilesApi.file_delete, path)

    def workspace_bundle(self) -> Call[bytes]:
        return self._call(WorkerFilesApi.workspace_bundle)

    def workspace_restore(self, data: bytes) -> Call[int]:
        return self._call(WorkerFilesApi.workspace_restore, data)

    def logs(self, after: int, limit: int) -> Call[list[LogLine]]:
        return self._call(WorkerFilesApi.logs, after, limit)
