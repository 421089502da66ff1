"""The SQLite store's busiest write, a session's batch, in one thread hop.

aiosqlite runs each statement in its thread and wakes the event loop for each result:
a batch (``BEGIN``, four or five ``executemany``, ``COMMIT``) crossed threads seven
times, 0.8 ms of CPU; sent whole to a thread of its own it crosses once (0.35 ms, half
the wall time). It has a connection of its own to the same file, with the same pragmas;
the store's lock keeps the two connections from writing at once.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

Statement = tuple[str, Iterable[Sequence[Any]]]  # SQL and the rows for executemany


class BatchWriter:
    """One connection, used only from its one thread."""

    def __init__(self, path: Path, pragmas: Sequence[str]) -> None:
        self.path = path
        self.pragmas = tuple(pragmas)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ash-sqlite-batch")
        self._db: sqlite3.Connection | None = None

    async def open(self) -> None:
        await self._run(self._connect)

    async def close(self) -> None:
        try:
            await self._run(self._disconnect)
        finally:
            self._thread.shutdown(wait=False)

    async def transaction(self, statements: Sequence[Statement]) -> None:
        """Run the statements in one transaction (all or nothing); committed on return."""
        await self._run(self._apply, statements)

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def _connect(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None)
        for pragma in self.pragmas:
            db.execute(pragma)
        self._db = db

    def _disconnect(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def _apply(self, statements: Sequence[Statement]) -> None:
        db = self._db
        if db is None:
            raise sqlite3.ProgrammingError("the batch writer is closed")
        db.execute("BEGIN IMMEDIATE")
        try:
            for sql, rows in statements:
                db.executemany(sql, rows)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
