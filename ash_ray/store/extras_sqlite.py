"""Snapshots, attachments and session logs on SQLite (a mixin of
:class:`~ash_ray.store.sqlite.SqliteStore`).

An attachment's bytes are a file under ``<snapshot dir>/attachments/`` written atomically,
as snapshots are; its row holds the name and digest. Log lines are rows, trimmed to the
newest ``keep`` per session on every append.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ash_ray.errors import StoreError
from ash_ray.models import utcnow
from ash_ray.records import AttachmentRecord, LogLine
from ash_ray.store import _files as files
from ash_ray.store import _rows as rows

logger = logging.getLogger(__name__)

ATTACHMENT_COLS = (
    "id", "session_id", "message_id", "filename", "mime_type", "size_bytes", "sha256",
    "location", "created_at",
)


def _ts_out(ts: datetime) -> str:
    return rows.utc(ts).isoformat(timespec="microseconds")


def attachment_from(row: Any, created_at: datetime) -> AttachmentRecord:
    return AttachmentRecord(
        id=row["id"], session_id=row["session_id"], message_id=row["message_id"],
        filename=row["filename"], mime_type=row["mime_type"], size=row["size_bytes"],
        sha256=row["sha256"], created_at=created_at,
    )


def log_from(row: Any) -> LogLine:
    return {"index": row["idx"], "level": row["level"], "text": row["text"], "ts": row["ts"]}


class SqliteExtras:
    """Snapshots, attachments and logs; the host store provides the connection plumbing."""

    snapshot_dir: Path

    if TYPE_CHECKING:
        def _tx(self) -> AbstractAsyncContextManager[Any]: ...
        async def _retry(self, what: str, op: Any) -> Any: ...
        async def _fetch(
            self, what: str, sql: str, args: Iterable[Any] = ()
        ) -> list[sqlite3.Row]: ...

    @property
    def attachment_dir(self) -> Path:
        return self.snapshot_dir / "attachments"

    def _attachment_path(self, attachment_id: str) -> Path:
        # snapshot_name keeps the file inside its directory whatever the id is.
        return self.attachment_dir / files.snapshot_name(attachment_id).replace(".tar.gz", ".bin")

    async def put_attachment(self, record: AttachmentRecord, data: bytes) -> None:
        """Write the bytes atomically, then record the attachment."""
        target = self._attachment_path(record.id)
        await asyncio.to_thread(files.write_atomically, target, data)
        values = (
            record.id, record.session_id, record.message_id, record.filename,
            record.mime_type, record.size, record.sha256, target.name,
            _ts_out(record.created_at),
        )

        async def op() -> None:
            async with self._tx() as tx:
                await tx.execute(
                    f"INSERT INTO attachments ({', '.join(ATTACHMENT_COLS)}) "
                    f"VALUES ({', '.join('?' for _ in ATTACHMENT_COLS)})",
                    values,
                )

        await self._retry("put_attachment", op)

    async def get_attachment(self, attachment_id: str) -> AttachmentRecord | None:
        found = await self._fetch(
            "get_attachment", "SELECT * FROM attachments WHERE id = ?", (attachment_id,)
        )
        return _attachment(found[0]) if found else None

    async def read_attachment(self, attachment_id: str) -> bytes | None:
        """The attachment's bytes; None when unknown. A file that does not match its
        digest is a StoreError (a torn or tampered file is never served)."""
        record = await self.get_attachment(attachment_id)
        if record is None:
            return None
        path = self._attachment_path(attachment_id)
        data = await files.read_verified(path, record.sha256, "attachment file")
        if data is None:
            raise StoreError(f"attachment {attachment_id} is recorded but {path} is missing")
        return data

    async def list_attachments(self, session_id: str) -> list[AttachmentRecord]:
        found = await self._fetch(
            "list_attachments",
            "SELECT * FROM attachments WHERE session_id = ? ORDER BY created_at, id",
            (session_id,),
        )
        return [_attachment(row) for row in found]

    async def delete_attachment(self, attachment_id: str) -> bool:
        async def op() -> bool:
            async with self._tx() as tx:
                cur = await tx.execute("DELETE FROM attachments WHERE id = ?", (attachment_id,))
                return bool(cur.rowcount > 0)

        deleted: bool = await self._retry("delete_attachment", op)
        await asyncio.to_thread(self._attachment_path(attachment_id).unlink, missing_ok=True)
        return deleted

    async def delete_session_extras(self, session_id: str) -> None:
        """Remove a deleted session's attachments (rows and files) and log lines."""
        for record in await self.list_attachments(session_id):
            await self.delete_attachment(record.id)

        async def op() -> None:
            async with self._tx() as tx:
                await tx.execute("DELETE FROM session_logs WHERE session_id = ?", (session_id,))

        await self._retry("delete_session_logs", op)

    async def append_logs(self, session_id: str, lines: list[LogLine], keep: int) -> None:
        """Add lines (a retried batch is a no-op) and keep only the newest ``keep``."""
        if not lines:
            return
        newest = max(line["index"] for line in lines)

        async def op() -> None:
            async with self._tx() as tx:
                await tx.executemany(
                    "INSERT INTO session_logs (session_id, idx, level, text, ts) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    [(session_id, ln["index"], ln["level"], ln["text"], ln["ts"]) for ln in lines],
                )
                await tx.execute(
                    "DELETE FROM session_logs WHERE session_id = ? AND idx <= ?",
                    (session_id, newest - keep),
                )

        await self._retry("append_logs", op)

    async def list_logs(
        self, session_id: str, after: int = -1, limit: int = 10_000
    ) -> list[LogLine]:
        """Lines with ``index > after``, oldest first."""
        found = await self._fetch(
            "list_logs",
            "SELECT idx, level, text, ts FROM session_logs WHERE session_id = ? AND idx > ? "
            "ORDER BY idx LIMIT ?",
            (session_id, after, limit),
        )
        return [log_from(row) for row in found]

    async def last_log_index(self, session_id: str) -> int:
        found = await self._fetch(
            "last_log_index",
            "SELECT MAX(idx) AS idx FROM session_logs WHERE session_id = ?",
            (session_id,),
        )
        value = found[0]["idx"] if found else None
        return -1 if value is None else int(value)

    # ------------------------------------------------------------ snapshots

    def _snapshot_path(self, session_id: str) -> Path:
        return self.snapshot_dir / files.snapshot_name(session_id)

    async def put_snapshot(self, session_id: str, data: bytes) -> None:
        """Write the archive atomically, then record its size and digest."""
        target = self._snapshot_path(session_id)
        digest = await asyncio.to_thread(files.write_atomically, target, data)

        async def op() -> None:
            async with self._tx() as tx:
                await tx.execute(
                    "INSERT INTO snapshots (session_id, size_bytes, sha256, location, data, "
                    "created_at) VALUES (?, ?, ?, ?, NULL, ?) ON CONFLICT (session_id) DO UPDATE "
                    "SET size_bytes = excluded.size_bytes, sha256 = excluded.sha256, "
                    "location = excluded.location, created_at = excluded.created_at",
                    (session_id, len(data), digest, target.name, _ts_out(utcnow())),
                )

        await self._retry("put_snapshot", op)

    async def get_snapshot(self, session_id: str) -> bytes | None:
        """The last archive put for the session, or None; a corrupt file is a StoreError."""
        found = await self._fetch(
            "get_snapshot",
            "SELECT location, sha256 FROM snapshots WHERE session_id = ?",
            (session_id,),
        )
        if not found:
            return None
        path = self.snapshot_dir / found[0]["location"]
        data = await files.read_verified(
            path, found[0]["sha256"], f"session {session_id}'s snapshot", session_id=session_id
        )
        if data is None:
            logger.warning("snapshot of session %s is recorded but %s is missing", session_id, path)
        return data

    async def delete_snapshot(self, session_id: str) -> None:
        """Forget the session's snapshot and remove its file."""

        async def op() -> None:
            async with self._tx() as tx:
                await tx.execute("DELETE FROM snapshots WHERE session_id = ?", (session_id,))

        await self._retry("delete_snapshot", op)
        await asyncio.to_thread(self._snapshot_path(session_id).unlink, missing_ok=True)


def _attachment(row: Any) -> AttachmentRecord:
    return attachment_from(row, rows.utc(datetime.fromisoformat(row["created_at"])))
