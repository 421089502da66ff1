"""Durable state: the :class:`Store` protocol, its SQLite and Postgres implementations.

``open_store(settings)`` picks the implementation; the caller opens it::

    async with open_store(settings) as store:   # or: await store.open() ... close()
        await store.write(batch)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ash_ray.store.base import Store
from ash_ray.store.postgres import PostgresStore
from ash_ray.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from ash_ray.config import Settings

__all__ = ["PostgresStore", "SqliteStore", "Store", "open_store"]


def open_store(settings: Settings) -> PostgresStore | SqliteStore:
    """The store ``settings`` asks for (Postgres when a database URL is set), not yet open."""
    if settings.store_kind == "postgres":
        return PostgresStore(settings.database_url)
    return SqliteStore(
        settings.sqlite_path, settings.snapshot_dir, synchronous=settings.sqlite_synchronous
    )
