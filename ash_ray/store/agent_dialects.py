"""The two dialects of :class:`~ash_ray.store.agent_data.AgentData`.

SQLite keeps archive files under ``<snapshot_dir>/agents/<sha256>.tar.gz`` (written
atomically, checked against the recorded digest on read); Postgres keeps the bytes in
the row, so any node reaches them through the database.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from ash_ray.errors import StoreError
from ash_ray.store import _files as files
from ash_ray.store import _rows as rows
from ash_ray.store.agent_data import AgentData, TxFn

logger = logging.getLogger(__name__)

T = TypeVar("T")
_MARK = re.compile(r"\?")


class SqliteAgentData(AgentData):
    snapshot_dir: Path
    _tx: Any
    _retry: Any

    def _archive_dir(self) -> Path:
        return self.snapshot_dir / "agents"

    async def _agent_tx(self, what: str, fn: TxFn[T]) -> T:
        async def op() -> T:
            async with self._tx() as tx:

                async def ex(sql: str, *args: Any) -> list[Any]:
                    return list(await tx.execute_fetchall(sql, args))

                return await fn(ex)

        result: T = await self._retry(what, op)
        return result

    def _ts_param(self, ts: datetime) -> Any:
        return rows.utc(ts).isoformat(timespec="microseconds")

    def _ts_value(self, value: Any) -> datetime:
        return rows.utc(datetime.fromisoformat(value))

    async def _archive_columns(self, sha: str, data: bytes) -> tuple[str | None, bytes | None]:
        target = self._archive_dir() / f"{sha}.tar.gz"
        await asyncio.to_thread(files.write_atomically, target, data)
        return target.name, None

    async def _archive_bytes(self, row: Any) -> bytes | None:
        path = self._archive_dir() / row["location"]
        data = await files.read_verified(path, row["sha256"], "agent archive")
        if data is None:
            logger.warning("agent archive %s is recorded but missing", path)
        return data

    async def _archives_dropped(self, shas: set[str]) -> None:
        for sha in shas:
            await asyncio.to_thread((self._archive_dir() / f"{sha}.tar.gz").unlink, True)


def _pg(sql: str) -> str:
    """``?`` placeholders as Postgres ``$1, $2, ...``."""
    count = iter(range(1, 10_000))
    return _MARK.sub(lambda _m: f"${next(count)}", sql)


class PostgresAgentData(AgentData):
    _run: Any

    async def _agent_tx(self, what: str, fn: TxFn[T]) -> T:
        async def run(conn: Any) -> T:
            async with conn.transaction():

                async def ex(sql: str, *args: Any) -> list[Any]:
                    return list(await conn.fetch(_pg(sql), *args))

                return await fn(ex)

        result: T = await self._run(what, run)
        return result

    def _ts_param(self, ts: datetime) -> Any:
        return rows.utc(ts)

    def _ts_value(self, value: Any) -> datetime:
        return rows.utc(value)

    async def _archive_columns(self, sha: str, data: bytes) -> tuple[str | None, bytes | None]:
        return None, data

    async def _archive_bytes(self, row: Any) -> bytes | None:
        data = bytes(row["data"])
        if files.sha256(data) != row["sha256"]:
            raise StoreError(f"agent archive {row['agent_name']} v{row['version']} is corrupt")
        return data
