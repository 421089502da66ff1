"""One way to run SQL on either store, for the query modules beyond the core protocol.

The queue, usage and eval modules write each statement once with ``?`` placeholders and
SQLite-and-Postgres SQL (``UPDATE ... RETURNING``, ``COALESCE``, ``CASE``); :class:`Db`
numbers the placeholders for Postgres and converts timestamps both ways. Every statement
runs through the store's own retry loop. A statement is atomic on its own in both
dialects, which is what the queue's claim relies on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ash_ray.store import _rows as rows
from ash_ray.store.postgres import PostgresStore
from ash_ray.store.sqlite import SqliteStore


def _numbered(sql: str) -> str:
    parts = sql.split("?")
    return parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], start=1))


class Db:
    """SQL on an open :class:`SqliteStore` or :class:`PostgresStore`."""

    def __init__(self, store: Any) -> None:
        if not isinstance(store, SqliteStore | PostgresStore):
            raise TypeError(f"no SQL access to a {type(store).__name__}")
        self.store = store
        self.kind: str = store.kind

    def ts(self, value: datetime | None) -> Any:
        """A timestamp as this dialect stores it (SQLite: fixed-width ISO text)."""
        if value is None:
            return None
        if self.kind == "sqlite":
            return rows.utc(value).isoformat(timespec="microseconds")
        return rows.utc(value)

    def ts_in(self, value: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            return rows.utc(value)
        return rows.utc(datetime.fromisoformat(value))

    async def fetch(self, what: str, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows as dicts. Writes commit at once (one statement, one transaction)."""
        if isinstance(self.store, SqliteStore):
            found: list[Any] = await self.store._fetch(what, sql, args)
        else:
            found = await self.store._fetch(what, _numbered(sql), *args)
        return [dict(row) for row in found]

    async def one(self, what: str, sql: str, args: Sequence[Any] = ()) -> dict[str, Any] | None:
        found = await self.fetch(what, sql, args)
        return found[0] if found else None
