"""SQLite store: one aiosqlite connection in WAL mode, the embedded default, and one for
sessions' batches (:mod:`.sqlite_writer`: a whole batch in one thread hop).

Every call takes one lock, so transactions never interleave on either connection.
``synchronous=FULL`` (the default) makes each commit durable across power loss, which
is what ``write`` promises; ``NORMAL`` trades that for speed (still safe on crashes).
Snapshots are files under ``snapshot_dir`` written atomically (tmp + fsync + rename);
the ``snapshots`` table holds their size and sha256.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import aiosqlite

from ash_ray.errors import StoreError
from ash_ray.models import (
    DEFAULT_TENANT,
    AgentRecord,
    EventRecord,
    MessageRecord,
    SessionRecord,
    UsageRecord,
    WriteBatch,
    new_id,
    utcnow,
)
from ash_ray.store import _rows as rows
from ash_ray.store import _valid as valid
from ash_ray.store.agent_dialects import SqliteAgentData
from ash_ray.store.extras_sqlite import SqliteExtras
from ash_ray.store.schema import LATEST_VERSION, SCHEMA_VERSION_TABLE, pending, statements
from ash_ray.store.sqlite_writer import BatchWriter
from ash_ray.store.tenancy import TenancyStore
from ash_ray.store.turn_queue import SqliteTurnQueue, turn_statements

logger = logging.getLogger(__name__)


def _ts_out(ts: datetime) -> str:
    # Fixed width (always microseconds, always +00:00) so text order is time order.
    return rows.utc(ts).isoformat(timespec="microseconds")


def _ts_in(value: Any) -> datetime:
    return rows.utc(datetime.fromisoformat(value))


_agent = partial(rows.agent_from, ts=_ts_in)
_session = partial(rows.session_from, ts=_ts_in)
_message = partial(rows.message_from, ts=_ts_in)
_event = partial(rows.event_from, ts=_ts_in)
_usage = partial(rows.usage_from, ts=_ts_in)


def _insert(table: str, cols: tuple[str, ...], tail: str = "ON CONFLICT DO NOTHING") -> str:
    marks = ", ".join("?" for _ in cols)
    return f"INSERT INTO {table} ({rows.columns(cols)}) VALUES ({marks}) {tail}"


_UPSERT_SESSION = _insert(
    "sessions",
    rows.SESSION_COLS,
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in rows.SESSION_COLS if c not in ("id", "created_at")),
)
_INSERT_MESSAGE = _insert("messages", rows.MESSAGE_COLS)
_INSERT_EVENT = _insert("events", rows.EVENT_COLS)
_INSERT_USAGE = _insert("usage", rows.USAGE_COLS)
_BATCH_SQL = (_UPSERT_SESSION, _INSERT_MESSAGE, _INSERT_EVENT, _INSERT_USAGE)  # batch_rows's
_NOT_OPEN = "the SQLite store is not open; call `await store.open()` first"


def _transient(exc: BaseException) -> bool:
    # Another process holding the write lock longer than busy_timeout.
    return isinstance(exc, sqlite3.OperationalError) and (
        "locked" in str(exc) or "busy" in str(exc)
    )


class SqliteStore(SqliteAgentData, SqliteExtras, SqliteTurnQueue, TenancyStore):
    """The :class:`~ash_ray.store.base.Store` on one SQLite file (WAL, one lock)."""

    kind = "sqlite"

    def __init__(
        self,
        path: Path,
        snapshot_dir: Path,
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        busy_timeout_ms: int = 5000,
        retry_timeout_s: float = 30.0,
    ) -> None:
        self.path = Path(path)
        self.snapshot_dir = Path(snapshot_dir)
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self.retry_timeout_s = retry_timeout_s
        self._db: aiosqlite.Connection | None = None
        self._batches: BatchWriter | None = None
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Create the file and the snapshot directory if needed, run pending migrations."""
        if self._db is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        try:
            db = await aiosqlite.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {self.path}: {exc}") from exc
        db.row_factory = aiosqlite.Row
        self._db = db
        # The batch writer's connection gets the same (WAL is the file's, set once).
        pragmas = (f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}",
                   f"PRAGMA synchronous = {self.synchronous}")
        try:
            await db.execute(pragmas[0])

            async def wal() -> None:
                # Switching to WAL takes an exclusive lock and skips the busy handler: a
                # racing opener (a restarting registry) gets "locked" at once, so retry.
                await db.execute("PRAGMA journal_mode = WAL")

            await self._retry("open", wal)
            await db.execute(pragmas[1])
            await self._retry("migrate", self._migrate)
            self._batches = BatchWriter(self.path, pragmas)
            await self._batches.open()
        except BaseException:
            await self.close()
            raise
        logger.info("sqlite store open at %s (schema v%d)", self.path, LATEST_VERSION)

    async def close(self) -> None:
        """Close the connection; safe to call twice."""
        db, self._db = self._db, None
        batches, self._batches = self._batches, None
        if batches is not None:
            await batches.close()
        if db is not None:
            await db.close()

    async def __aenter__(self) -> SqliteStore:
        await self.open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _migrate(self) -> None:
        db = self._conn()
        async with self._lock:
            await db.execute(SCHEMA_VERSION_TABLE)
        async with self._tx() as tx:
            applied = await self._version(tx)
            if applied > LATEST_VERSION:
                logger.warning(
                    "database schema v%d is newer than this ash-ray (v%d)", applied, LATEST_VERSION
                )
            for migration in pending(applied):
                logger.info("applying migration %d: %s", migration.version, migration.description)
                for stmt in statements(migration, "sqlite"):
                    await tx.execute(stmt)
                await tx.execute(
                    "INSERT INTO schema_version (version, description) VALUES (?, ?)",
                    (migration.version, migration.description),
                )

    @staticmethod
    async def _version(db: aiosqlite.Connection) -> int:
        found = list(await db.execute_fetchall("SELECT max(version) AS v FROM schema_version"))
        return int(found[0]["v"] or 0)

    async def schema_version(self) -> int:
        """The highest migration applied to this database."""
        async with self._lock:
            return await self._version(self._conn())

    # ------------------------------------------------------------ plumbing

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError(_NOT_OPEN)
        return self._db

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[aiosqlite.Connection]:
        db = self._conn()
        async with self._lock:
            await db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                await db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    await db.execute("ROLLBACK")
                raise

    async def _retry(self, what: str, op: Any) -> Any:
        return await rows.with_retry(
            op, what=f"sqlite {what}", transient=_transient, timeout_s=self.retry_timeout_s
        )

    async def _fetch(self, what: str, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        async def op() -> list[sqlite3.Row]:
            async with self._lock:
                return list(await self._conn().execute_fetchall(sql, tuple(args)))

        result: list[sqlite3.Row] = await self._retry(what, op)
        return result

    async def _query(self, what: str, sql: str, args: Sequence[Any]) -> list[Any]:
        # One statement in autocommit mode: atomic, RETURNING rows included.
        return await self._fetch(what, sql, args)

    def _ts_db(self, ts: datetime) -> Any:
        return _ts_out(ts)

    def _ts_py(self, value: Any) -> datetime:
        return _ts_in(value)

    # ------------------------------------------------------------ agents

    async def upsert_agent(
        self, name: str, path: str, tenant: str = DEFAULT_TENANT
    ) -> AgentRecord:
        """Insert the tenant's ``name`` at version 1, or bump its version and set ``path``."""
        key = rows.tenant_name(tenant, name)

        async def op() -> AgentRecord:
            now = _ts_out(utcnow())
            async with self._tx() as tx:
                await tx.execute(
                    "INSERT INTO agents (id, tenant_name, tenant_id, name, version, path, "
                    "created_at, updated_at) VALUES (?, ?, ?, ?, 1, ?, ?, ?) "
                    "ON CONFLICT (tenant_name) DO UPDATE SET "
                    "version = agents.version + 1, path = excluded.path, "
                    "updated_at = excluded.updated_at",
                    (new_id(), key, tenant, name, path, now, now),
                )
                cur = await tx.execute("SELECT * FROM agents WHERE tenant_name = ?", (key,))
                row = await cur.fetchone()
            assert row is not None
            return valid.parse_one("agent", name, row, _agent)

        agent: AgentRecord = await self._retry("upsert_agent", op)
        return agent

    async def get_agent(self, name: str, tenant: str = DEFAULT_TENANT) -> AgentRecord | None:
        """The tenant's agent called ``name``, or None."""
        found = await self._fetch(
            "get_agent",
            "SELECT * FROM agents WHERE tenant_name = ?",
            (rows.tenant_name(tenant, name),),
        )
        return valid.parse_one("agent", name, found[0], _agent) if found else None

    async def list_agents(self, tenant: str = DEFAULT_TENANT) -> list[AgentRecord]:
        """The tenant's agents by name."""
        found = await self._fetch(
            "list_agents", "SELECT * FROM agents WHERE tenant_id = ? ORDER BY name", (tenant,)
        )
        return valid.parse_each("agent", found, _agent)

    async def delete_agent(self, name: str, tenant: str = DEFAULT_TENANT) -> bool:
        """Remove the agent row (not its sessions); True if it existed."""

        async def op() -> bool:
            async with self._tx() as tx:
                cur = await tx.execute(
                    "DELETE FROM agents WHERE tenant_name = ?", (rows.tenant_name(tenant, name),)
                )
                return cur.rowcount > 0

        deleted: bool = await self._retry("delete_agent", op)
        return deleted

    # ------------------------------------------------------------ sessions and logs

    async def write(self, batch: WriteBatch) -> None:
        """Apply the whole batch in one transaction; a repeated batch changes nothing."""
        if batch.empty():
            return
        tables = zip(_BATCH_SQL, rows.batch_rows(batch, _ts_out), strict=True)
        work = [(sql, params) for sql, params in tables if params]
        work += turn_statements(batch, "sqlite")

        async def op() -> None:
            if self._batches is None:
                raise StoreError(_NOT_OPEN)
            async with self._lock:
                await self._batches.transaction(work)

        await self._retry("write", op)

    async def get_session(self, session_id: str) -> SessionRecord | None:
        """The session, or None."""
        found = await self._fetch(
            "get_session", "SELECT * FROM sessions WHERE id = ?", (session_id,)
        )
        return valid.parse_one("session", session_id, found[0], _session) if found else None

    async def list_sessions(
        self,
        *,
        agent: str | None = None,
        status: str | None = None,
        limit: int = 100,
        offset: int = 0,
        tenant: str | None = None,
    ) -> list[SessionRecord]:
        """Sessions newest first, optionally of one tenant, one agent, one status."""
        where, args = [], []
        if tenant is not None:
            where.append("tenant_id = ?")
            args.append(tenant)
        if agent is not None:
            where.append("agent_name = ?")
            args.append(agent)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        sql = "SELECT * FROM sessions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"

        async def page(size: int, start: int) -> list[sqlite3.Row]:
            return await self._fetch("list_sessions", sql, [*args, size, start])

        return await valid.fill_page(
            page, lambda found: valid.parse_each("session", found, _session), limit, offset
        )

    async def delete_session(self, session_id: str) -> bool:
        """Remove the session with its messages, events, usage and snapshot."""

        async def op() -> bool:
            async with self._tx() as tx:
                for table in ("messages", "events", "usage", "snapshots", "turn_queue"):
                    await tx.execute(f"DELETE FROM {table} WHERE session_id = ?", (session_id,))
                cur = await tx.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
                return cur.rowcount > 0

        await self.delete_session_extras(session_id)
        deleted: bool = await self._retry("delete_session", op)
        await asyncio.to_thread(self._snapshot_path(session_id).unlink, missing_ok=True)
        return deleted

    async def list_messages(
        self, session_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[MessageRecord]:
        """Messages with ``sequence > after`` in order."""
        found = await self._fetch(
            "list_messages",
            "SELECT * FROM messages WHERE session_id = ? AND sequence > ? "
            "ORDER BY sequence LIMIT ?",
            (session_id, after, -1 if limit is None else limit),
        )
        return valid.parse_each("message", found, _message)

    async def list_events(
        self, session_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[EventRecord]:
        """Events with ``seq > after`` in order."""
        found = await self._fetch(
            "list_events",
            "SELECT * FROM events WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (session_id, after, -1 if limit is None else limit),
        )
        return valid.parse_each("event", found, _event)

    async def list_usage(self, session_id: str | None = None) -> list[UsageRecord]:
        """Usage records in time order, of one session or of all."""
        args: tuple[str, ...] = ()
        if session_id is None:
            sql = "SELECT * FROM usage ORDER BY created_at, session_id, turn"
        else:
            sql = "SELECT * FROM usage WHERE session_id = ? ORDER BY created_at, turn"
            args = (session_id,)
        return valid.parse_each("usage", await self._fetch("list_usage", sql, args), _usage)
