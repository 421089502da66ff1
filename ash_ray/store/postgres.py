"""Postgres (and CockroachDB) store on an asyncpg pool.

Every call runs through one retry loop: lost or refused connections, a server that is
starting or shutting down, and serialization failures are retried with backoff for
``retry_timeout_s``; then the call raises :class:`StoreError`. Retrying ``write`` is
safe because it is idempotent (upsert sessions, insert-or-ignore everything else).

A batch is written by ONE statement (see :mod:`ash_ray.store._pgbatch`): one round
trip whatever the batch size. Snapshots are ``bytea`` rows so any node can restore any session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from functools import partial
from types import TracebackType
from typing import Any, TypeVar

import asyncpg

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
from ash_ray.store._pgbatch import WRITE_BATCH, batch_arrays
from ash_ray.store.agent_dialects import PostgresAgentData
from ash_ray.store.extras_postgres import PostgresExtras
from ash_ray.store.schema import LATEST_VERSION, SCHEMA_VERSION_TABLE, pending, statements
from ash_ray.store.tenancy import TenancyStore, numbered
from ash_ray.store.turn_queue import PostgresTurnQueue, turn_statements

logger = logging.getLogger(__name__)

T = TypeVar("T")
_MIGRATION_LOCK = 0x617368_7261  # "ashra": serializes migrations of concurrent openers

_TRANSIENT = (
    OSError,  # refused, reset, timeouts
    asyncpg.PostgresConnectionError,  # 08xxx, incl. ConnectionDoesNotExistError
    asyncpg.exceptions.CannotConnectNowError,  # 57P03 starting up / shutting down
    asyncpg.exceptions.AdminShutdownError,  # 57P01 terminated by pg_ctl stop
    asyncpg.exceptions.CrashShutdownError,  # 57P02
    asyncpg.exceptions.TransactionRollbackError,  # 40xxx serialization, deadlock
    asyncpg.exceptions.TooManyConnectionsError,  # 53300 while a restart settles
)

def _transient(exc: BaseException) -> bool:
    if isinstance(exc, _TRANSIENT):
        return True
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        return True  # e.g. "another operation is in progress" on a connection cut midway
    return isinstance(exc, asyncpg.InterfaceError) and "connection" in str(exc) and (
        "closed" in str(exc) or "lost" in str(exc)
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool reset hook. We never LISTEN, SET or hold session locks, so there is nothing
    to undo; skipping asyncpg's default RESET ALL saves a round trip per call (an open
    transaction is still rolled back by the pool itself)."""


def _ts(ts: datetime) -> datetime:
    return rows.utc(ts)


_agent = partial(rows.agent_from, ts=_ts)
_session = partial(rows.session_from, ts=_ts)
_message = partial(rows.message_from, ts=_ts)
_event = partial(rows.event_from, ts=_ts)
_usage = partial(rows.usage_from, ts=_ts)


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for logs and error messages)."""
    return re.sub(r"(://[^:/@]+:)[^@/]*@", r"\1***@", url)


class PostgresStore(PostgresAgentData, PostgresExtras, PostgresTurnQueue, TenancyStore):
    """The :class:`~ash_ray.store.base.Store` on Postgres or CockroachDB via asyncpg.

    ``url`` is ``postgresql://`` or ``postgres://``; libpq query parameters such as
    ``sslmode``, ``sslrootcert`` and ``application_name`` are understood.
    """

    kind = "postgres"

    def __init__(
        self,
        url: str,
        *,
        min_pool_size: int = 1,
        max_pool_size: int = 10,
        retry_timeout_s: float = 30.0,
        connect_timeout_s: float = 10.0,
        command_timeout_s: float = 60.0,
    ) -> None:
        if not url.startswith(("postgresql://", "postgres://")):
            raise StoreError(f"not a Postgres URL: {redact(url)!r} (want postgresql://...)")
        self.url = url
        self.min_pool_size = min_pool_size
        self.max_pool_size = max_pool_size
        self.retry_timeout_s = retry_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.command_timeout_s = command_timeout_s
        self.retries = 0
        """Transient failures retried so far (for metrics and tests)."""
        self._pool: asyncpg.Pool | None = None

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Connect (retrying while the server is unreachable) and run pending migrations."""
        if self._pool is not None:
            return

        async def connect() -> asyncpg.Pool:
            pool = await asyncpg.create_pool(
                self.url,
                min_size=self.min_pool_size,
                max_size=self.max_pool_size,
                timeout=self.connect_timeout_s,
                command_timeout=self.command_timeout_s,
                reset=_keep_session,
            )
            assert pool is not None
            return pool

        self._pool = await self._retry(f"connect to {redact(self.url)}", connect)
        try:
            await self._run("migrate", self._migrate)
        except BaseException:
            await self.close()
            raise
        logger.info("postgres store open at %s (schema v%d)", redact(self.url), LATEST_VERSION)

    async def close(self) -> None:
        """Close the pool; safe to call twice."""
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                async with asyncio.timeout(10):
                    await pool.close()
            except (TimeoutError, *_TRANSIENT):
                pool.terminate()

    async def __aenter__(self) -> PostgresStore:
        await self.open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _migrate(self, conn: asyncpg.Connection) -> None:
        while True:
            async with conn.transaction():
                try:
                    async with conn.transaction():  # a savepoint: CockroachDB may lack it
                        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                except asyncpg.PostgresError as exc:
                    logger.debug("no advisory lock for migrations: %s", exc)
                await conn.execute(SCHEMA_VERSION_TABLE)
                applied = await conn.fetchval(
                    "SELECT coalesce(max(version), 0) FROM schema_version"
                )
                if applied > LATEST_VERSION:
                    logger.warning(
                        "database schema v%d is newer than this ash-ray (v%d)",
                        applied,
                        LATEST_VERSION,
                    )
                todo = pending(applied)
                if not todo:
                    return
                migration = todo[0]
                logger.info("applying migration %d: %s", migration.version, migration.description)
                for stmt in statements(migration, "postgres"):
                    await conn.execute(stmt)
                await conn.execute(
                    "INSERT INTO schema_version (version, description) VALUES ($1, $2)",
                    migration.version,
                    migration.description,
                )

    async def schema_version(self) -> int:
        """The highest migration applied to this database."""

        async def fn(conn: asyncpg.Connection) -> int:
            return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))

        return await self._run("schema_version", fn)

    # ------------------------------------------------------------ plumbing

    def _count_retry(self) -> None:
        self.retries += 1

    async def _retry(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        return await rows.with_retry(
            op,
            what=f"postgres {what}",
            transient=_transient,
            timeout_s=self.retry_timeout_s,
            on_retry=self._count_retry,
        )

    async def _run(self, what: str, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        async def op() -> T:
            if self._pool is None:
                raise StoreError("the Postgres store is not open; call `await store.open()` first")
            async with self._pool.acquire() as conn:
                try:
                    return await fn(conn)
                except Exception as exc:
                    if _transient(exc):
                        # Never hand a connection that failed mid-call back to the pool:
                        # its protocol state may be broken. The pool reconnects instead.
                        with contextlib.suppress(asyncpg.InterfaceError):  # already gone
                            conn.terminate()
                    raise

        return await self._retry(what, op)

    async def _fetch(self, what: str, sql: str, *args: Any) -> list[asyncpg.Record]:
        async def fn(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            return list(await conn.fetch(sql, *args))

        return await self._run(what, fn)

    async def _query(self, what: str, sql: str, args: Sequence[Any]) -> list[Any]:
        return await self._fetch(what, numbered(sql), *args)

    def _ts_db(self, ts: datetime) -> Any:
        return _ts(ts)

    def _ts_py(self, value: Any) -> datetime:
        return _ts(value)

    # ------------------------------------------------------------ agents

    async def upsert_agent(
        self, name: str, path: str, tenant: str = DEFAULT_TENANT
    ) -> AgentRecord:
        """Insert the tenant's ``name`` at version 1, or bump its version and set ``path``."""
        found = await self._fetch(
            "upsert_agent",
            "INSERT INTO agents (id, tenant_name, tenant_id, name, version, path, created_at, "
            "updated_at) VALUES ($1, $2, $3, $4, 1, $5, $6, $6) ON CONFLICT (tenant_name) "
            "DO UPDATE SET version = agents.version + 1, path = EXCLUDED.path, "
            "updated_at = EXCLUDED.updated_at RETURNING *",
            new_id(), rows.tenant_name(tenant, name), tenant, name, path, utcnow(),
        )  # fmt: skip
        return valid.parse_one("agent", name, found[0], _agent)

    async def get_agent(self, name: str, tenant: str = DEFAULT_TENANT) -> AgentRecord | None:
        """The tenant's agent called ``name``, or None."""
        found = await self._fetch(
            "get_agent", "SELECT * FROM agents WHERE tenant_name = $1",
            rows.tenant_name(tenant, name),
        )  # fmt: skip
        return valid.parse_one("agent", name, found[0], _agent) if found else None

    async def list_agents(self, tenant: str = DEFAULT_TENANT) -> list[AgentRecord]:
        """The tenant's agents by name."""
        found = await self._fetch(
            "list_agents", "SELECT * FROM agents WHERE tenant_id = $1 ORDER BY name", tenant
        )
        return valid.parse_each("agent", found, _agent)

    async def delete_agent(self, name: str, tenant: str = DEFAULT_TENANT) -> bool:
        """Remove the agent row (not its sessions); True if it existed."""
        found = await self._fetch(
            "delete_agent", "DELETE FROM agents WHERE tenant_name = $1 RETURNING id",
            rows.tenant_name(tenant, name),
        )  # fmt: skip
        return bool(found)

    # ------------------------------------------------------------ sessions and logs

    async def write(self, batch: WriteBatch) -> None:
        """Apply the whole batch in one transaction; a repeated batch changes nothing."""
        if batch.empty():
            return
        arrays = batch_arrays(batch, _ts)

        async def fn(conn: asyncpg.Connection) -> None:
            if not (batch.turns or batch.turns_done):
                await conn.execute(WRITE_BATCH, *arrays)  # one statement, one transaction
                return
            async with conn.transaction():
                await conn.execute(WRITE_BATCH, *arrays)
                for sql, args in turn_statements(batch, "postgres"):
                    await conn.executemany(sql, args)

        await self._run("write", fn)

    async def get_session(self, session_id: str) -> SessionRecord | None:
        """The session, or None."""
        found = await self._fetch("get_session", "SELECT * FROM sessions WHERE id = $1", session_id)
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

        async def page(size: int, start: int) -> list[asyncpg.Record]:
            return await self._fetch(
                "list_sessions",
                "SELECT * FROM sessions WHERE ($1::text IS NULL OR agent_name = $1) "
                "AND ($2::text IS NULL OR status = $2) AND ($5::text IS NULL OR tenant_id = $5) "
                "ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4",
                agent, status, size, start, tenant,
            )  # fmt: skip

        return await valid.fill_page(
            page, lambda found: valid.parse_each("session", found, _session), limit, offset
        )

    async def delete_session(self, session_id: str) -> bool:
        """Remove the session with its messages, events, usage and snapshot."""

        async def fn(conn: asyncpg.Connection) -> bool:
            async with conn.transaction():
                for table in ("messages", "events", "usage", "snapshots", "turn_queue"):
                    await conn.execute(f"DELETE FROM {table} WHERE session_id = $1", session_id)
                status = await conn.execute("DELETE FROM sessions WHERE id = $1", session_id)
            return bool(status.endswith(" 1"))

        await self.delete_session_extras(session_id)
        return await self._run("delete_session", fn)

    async def list_messages(
        self, session_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[MessageRecord]:
        """Messages with ``sequence > after`` in order."""
        found = await self._fetch(
            "list_messages",
            "SELECT * FROM messages WHERE session_id = $1 AND sequence > $2 "
            "ORDER BY sequence LIMIT $3",
            session_id,
            after,
            limit,
        )
        return valid.parse_each("message", found, _message)

    async def list_events(
        self, session_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[EventRecord]:
        """Events with ``seq > after`` in order."""
        found = await self._fetch(
            "list_events",
            "SELECT * FROM events WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            session_id,
            after,
            limit,
        )
        return valid.parse_each("event", found, _event)

    async def list_usage(self, session_id: str | None = None) -> list[UsageRecord]:
        """Usage records in time order, of one session or of all."""
        found = await self._fetch(
            "list_usage",
            "SELECT * FROM usage WHERE ($1::text IS NULL OR session_id = $1) "
            "ORDER BY created_at, session_id, turn",
            session_id,
        )
        return valid.parse_each("usage", found, _usage)
