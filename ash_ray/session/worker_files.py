"""The session worker's workspace and log methods: files, bundles, tool logs.

A mixin of :class:`~ash_ray.session.actor.SessionWorker` (kept here so the actor module
stays about turns and lifecycle). Each method works on the live sandbox's workspace with
the functions of :mod:`ash_ray.session.files`, in a thread: a large file or bundle does
not stall the worker's event loop, so a running turn's events keep flowing.
"""

from __future__ import annotations

import asyncio

from ash_ray.config import Settings
from ash_ray.files_api import WorkerFilesApi
from ash_ray.handles import RegistryClient
from ash_ray.records import LogLine
from ash_ray.sandbox import Sandbox
from ash_ray.session import files
from ash_ray.session.state import Bound, HasGuard, bound
from ash_ray.session.toollogs import LogBook, LoggedSandbox


class WorkerFiles(HasGuard):
    """Files, bundles and logs of the bound session's workspace (see the module doc)."""

    settings: Settings
    registry: RegistryClient
    logbook: LogBook | None = None

    def _logged(self, sandbox: Sandbox, session_id: str) -> Sandbox:
        """``sandbox`` writing its commands' output into this session's log book."""
        if self.logbook is None:
            registry = self.registry

            async def save(lines: list[LogLine]) -> None:
                await registry.append_logs(session_id, lines)

            async def last_index() -> int:
                return await registry.last_log_index(session_id)

            async def fetch(after: int, limit: int) -> list[LogLine]:
                return await registry.list_logs(session_id, after, limit)

            self.logbook = LogBook(self.settings.session_log_lines, save, last_index, fetch)
        return LoggedSandbox(sandbox, self.logbook)

    @bound
    async def files_list(self, s: Bound, include_hidden: bool) -> list[files.FileInfo]:
        return await asyncio.to_thread(files.list_files, s.sandbox.workspace, include_hidden)

    @bound
    async def file_read(
        self, s: Bound, path: str, max_bytes: int
    ) -> tuple[bytes, files.FileInfo]:
        return await asyncio.to_thread(files.read_file, s.sandbox.workspace, path, max_bytes)

    async def _snapshot_to_store(self, s: Bound, force: bool = False) -> None:
        raise NotImplementedError  # the worker's (see WorkerBinding)

    @bound
    async def files_write(
        self, s: Bound, items: list[tuple[str, bytes]], target: str
    ) -> list[files.WriteResult]:
        written = await asyncio.to_thread(
            files.write_files, s.sandbox.workspace, items, target
        )
        # Answered once in the store: a worker lost before the turn's end keeps it.
        await self._snapshot_to_store(s)
        return written

    @bound
    async def file_delete(self, s: Bound, path: str) -> str:
        deleted = await asyncio.to_thread(files.delete_file, s.sandbox.workspace, path)
        await self._snapshot_to_store(s)
        return deleted

    @bound
    async def workspace_bundle(self, s: Bound) -> bytes:
        return await asyncio.to_thread(
            files.bundle, s.sandbox.workspace, self.settings.max_bundle_bytes
        )

    @bound
    async def workspace_restore(self, s: Bound, data: bytes) -> int:
        count = await asyncio.to_thread(
            files.restore, s.sandbox.workspace, data, self.settings.max_bundle_bytes
        )
        await self._snapshot_to_store(s)
        return count

    @bound
    async def logs(self, s: Bound, after: int, limit: int) -> list[LogLine]:
        """Log lines with ``index > after`` (this worker's and, before them, the Store's)."""
        if self.logbook is None:
            return await self.registry.list_logs(s.record.id, after, limit)
        return await self.logbook.since(after, limit)

    async def _flush_logs(self) -> None:
        """Save the lines still unsaved (before the worker is released)."""
        if self.logbook is not None:
            await self.logbook.flush()


def _conforms(worker: WorkerFiles) -> WorkerFilesApi:
    return worker  # mypy: every method the clients call, typed alike
