"""Snapshots, attachments and session logs on Postgres (a mixin of
:class:`~ash_ray.store.postgres.PostgresStore`).

A snapshot's and an attachment's bytes live in their row (``data``), so every node
reads them from the database. Log lines are rows, trimmed to the newest ``keep`` per
session on every append.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from ash_ray.errors import StoreError
from ash_ray.models import utcnow
from ash_ray.records import AttachmentRecord, LogLine
from ash_ray.store import _files as files
from ash_ray.store import _rows as rows
from ash_ray.store.extras_sqlite import ATTACHMENT_COLS, attachment_from, log_from

T = TypeVar("T")
_META = ", ".join(ATTACHMENT_COLS)


class PostgresExtras:
    """Snapshots, attachments and logs; the host store provides the connection plumbing."""

    if TYPE_CHECKING:
        async def _run(
            self, what: str, fn: Callable[[asyncpg.Connection], Awaitable[T]]
        ) -> T: ...
        async def _fetch(self, what: str, sql: str, *args: Any) -> list[asyncpg.Record]: ...

    async def put_attachment(self, record: AttachmentRecord, data: bytes) -> None:
        await self._fetch(
            "put_attachment",
            f"INSERT INTO attachments ({_META}, data) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, $9)",
            record.id, record.session_id, record.message_id, record.filename,
            record.mime_type, record.size, record.sha256, rows.utc(record.created_at), data,
        )

    async def get_attachment(self, attachment_id: str) -> AttachmentRecord | None:
        found = await self._fetch(
            "get_attachment", f"SELECT {_META} FROM attachments WHERE id = $1", attachment_id
        )
        return _attachment(found[0]) if found else None

    async def read_attachment(self, attachment_id: str) -> bytes | None:
        found = await self._fetch(
            "read_attachment", "SELECT data, sha256 FROM attachments WHERE id = $1", attachment_id
        )
        if not found:
            return None
        data = bytes(found[0]["data"])
        if files.sha256(data) != found[0]["sha256"]:
            raise StoreError(f"attachment {attachment_id} does not match its recorded sha256")
        return data

    async def list_attachments(self, session_id: str) -> list[AttachmentRecord]:
        found = await self._fetch(
            "list_attachments",
            f"SELECT {_META} FROM attachments WHERE session_id = $1 ORDER BY created_at, id",
            session_id,
        )
        return [_attachment(row) for row in found]

    async def delete_attachment(self, attachment_id: str) -> bool:
        async def fn(conn: asyncpg.Connection) -> bool:
            status = await conn.execute("DELETE FROM attachments WHERE id = $1", attachment_id)
            return bool(status.endswith(" 1"))

        return await self._run("delete_attachment", fn)

    async def delete_session_extras(self, session_id: str) -> None:
        """Remove a deleted session's attachments and log lines."""

        async def fn(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.execute("DELETE FROM attachments WHERE session_id = $1", session_id)
                await conn.execute("DELETE FROM session_logs WHERE session_id = $1", session_id)

        await self._run("delete_session_extras", fn)

    async def append_logs(self, session_id: str, lines: list[LogLine], keep: int) -> None:
        """Add lines (a retried batch is a no-op) and keep only the newest ``keep``."""
        if not lines:
            return
        newest = max(line["index"] for line in lines)

        async def fn(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.executemany(
                    "INSERT INTO session_logs (session_id, idx, level, text, ts) "
                    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    [(session_id, ln["index"], ln["level"], ln["text"], ln["ts"]) for ln in lines],
                )
                await conn.execute(
                    "DELETE FROM session_logs WHERE session_id = $1 AND idx <= $2",
                    session_id, newest - keep,
                )

        await self._run("append_logs", fn)

    async def list_logs(
        self, session_id: str, after: int = -1, limit: int = 10_000
    ) -> list[LogLine]:
        """Lines with ``index > after``, oldest first."""
        found = await self._fetch(
            "list_logs",
            "SELECT idx, level, text, ts FROM session_logs WHERE session_id = $1 AND idx > $2 "
            "ORDER BY idx LIMIT $3",
            session_id, after, limit,
        )
        return [log_from(row) for row in found]

    async def last_log_index(self, session_id: str) -> int:
        found = await self._fetch(
            "last_log_index",
            "SELECT MAX(idx) AS idx FROM session_logs WHERE session_id = $1",
            session_id,
        )
        value = found[0]["idx"] if found else None
        return -1 if value is None else int(value)

    # ------------------------------------------------------------ snapshots

    async def put_snapshot(self, session_id: str, data: bytes) -> None:
        """Store the archive in the database, replacing the previous one."""
        await self._fetch(
            "put_snapshot",
            "INSERT INTO snapshots (session_id, size_bytes, sha256, location, data, created_at) "
            "VALUES ($1, $2, $3, NULL, $4, $5) ON CONFLICT (session_id) DO UPDATE SET "
            "size_bytes = EXCLUDED.size_bytes, sha256 = EXCLUDED.sha256, "
            "data = EXCLUDED.data, created_at = EXCLUDED.created_at",
            session_id,
            len(data),
            hashlib.sha256(data).hexdigest(),
            data,
            utcnow(),
        )

    async def get_snapshot(self, session_id: str) -> bytes | None:
        """The last archive put for the session, or None."""
        found = await self._fetch(
            "get_snapshot", "SELECT data FROM snapshots WHERE session_id = $1", session_id
        )
        return bytes(found[0]["data"]) if found else None

    async def delete_snapshot(self, session_id: str) -> None:
        """Forget the session's snapshot."""
        await self._fetch(
            "delete_snapshot", "DELETE FROM snapshots WHERE session_id = $1", session_id
        )


def _attachment(row: Any) -> AttachmentRecord:
    return attachment_from(row, rows.utc(row["created_at"]))
