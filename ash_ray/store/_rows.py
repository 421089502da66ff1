"""Row <-> record conversion and the retry loop shared by both stores.

Timestamps are the one dialect difference: SQLite stores fixed-width ISO text in UTC
(which sorts like time), Postgres stores aware datetimes. Each store passes its own
``to_db``/``from_db`` pair to the helpers here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from ash_ray.errors import StoreError
from ash_ray.models import (
    AgentRecord,
    EventRecord,
    MessageRecord,
    SessionConfig,
    SessionRecord,
    Usage,
    UsageRecord,
    WriteBatch,
)
from ash_ray.store import _valid as valid

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Row(Protocol):
    """A fetched row by column name (``sqlite3.Row``, ``asyncpg.Record``)."""

    def __getitem__(self, key: str, /) -> Any: ...


TsOut = Callable[[datetime], Any]
TsIn = Callable[[Any], datetime]

AGENT_COLS = ("id", "name", "version", "path", "created_at", "updated_at", "tenant_id")
SESSION_COLS = (
    "id",
    "agent_name",
    "sandbox_id",
    "status",
    "created_at",
    "last_active_at",
    "parent_session_id",
    "config",
    "usage",
    "num_turns",
    "last_seq",
    "tenant_id",
)
MESSAGE_COLS = ("session_id", "sequence", "id", "role", "content", "created_at")
EVENT_COLS = ("session_id", "seq", "type", "data", "created_at")
USAGE_COLS = (
    "session_id", "turn", "created_at", "agent_name", "model", "usage",
    "input_tokens", "output_tokens", "cache_creation_tokens", "cache_read_tokens",
    "tool_calls", "messages", "compute_ms",
)  # fmt: skip
USAGE_COUNTERS = USAGE_COLS[6:]


def utc(ts: datetime) -> datetime:
    """``ts`` as an aware UTC datetime; naive values are taken to be UTC already."""
    if ts.tzinfo is UTC:
        return ts
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


# One encoder for all rows (json.dumps builds a new one per call). ensure_ascii (the
# default) keeps lone surrogates and NUL representable in TEXT columns.
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def dumps(value: Any) -> str:
    return _ENCODER.encode(value)


def session_row(rec: SessionRecord, ts: TsOut) -> tuple[Any, ...]:
    return (
        rec.id,
        rec.agent_name,
        rec.sandbox_id,
        rec.status,
        ts(rec.created_at),
        ts(rec.last_active_at),
        rec.parent_session_id,
        rec.config.model_dump_json(),
        rec.usage.model_dump_json(),
        rec.num_turns,
        rec.last_seq,
        rec.tenant_id,
    )


def message_row(rec: MessageRecord, ts: TsOut) -> tuple[Any, ...]:
    return (
        rec.session_id,
        rec.sequence,
        rec.id,
        rec.role,
        dumps(rec.content),
        ts(rec.created_at),
    )


def event_row(rec: EventRecord, ts: TsOut) -> tuple[Any, ...]:
    return (rec.session_id, rec.seq, rec.type, dumps(rec.data), ts(rec.created_at))


def usage_row(rec: UsageRecord, ts: TsOut) -> tuple[Any, ...]:
    return (
        rec.session_id,
        rec.turn,
        ts(rec.created_at),
        rec.agent_name,
        rec.model,
        rec.usage.model_dump_json(),
        rec.usage.input_tokens,
        rec.usage.output_tokens,
        rec.usage.cache_creation_input_tokens,
        rec.usage.cache_read_input_tokens,
        rec.tool_calls,
        rec.messages,
        rec.compute_ms,
    )


def last_per_id(sessions: Sequence[SessionRecord]) -> list[SessionRecord]:
    """One record per session id, the last one given (an upsert may touch a row once)."""
    return list({rec.id: rec for rec in sessions}.values())


BatchRows = tuple[list[tuple[Any, ...]], ...]


def batch_rows(batch: WriteBatch, ts: TsOut) -> BatchRows:
    """The rows of sessions, messages, events and usage of ``batch``, in that order.

    Each record is checked as the read side will parse it (see :mod:`._valid`); one that
    would not read back is logged and left out instead of failing the whole batch.
    """
    return (
        valid.encode_each(
            "session",
            last_per_id(batch.sessions),
            lambda r: session_row(valid.normalized(r), ts),
            lambda r: f"id={r.id}",
        ),
        valid.encode_each(
            "message",
            batch.messages,
            lambda r: message_row(valid.checked_message(r), ts),
            lambda r: f"id={r.id}",
        ),
        valid.encode_each(
            "event",
            batch.events,
            lambda r: event_row(valid.checked_event(r), ts),
            lambda r: f"session_id={r.session_id} seq={r.seq}",
        ),
        valid.encode_each(
            "usage",
            batch.usage,
            lambda r: usage_row(valid.normalized(r), ts),
            lambda r: f"session_id={r.session_id} turn={r.turn}",
        ),
    )


def agent_from(row: Row, ts: TsIn) -> AgentRecord:
    return AgentRecord(
        id=row["id"],
        name=row["name"],
        tenant_id=row["tenant_id"],
        version=row["version"],
        path=row["path"],
        created_at=ts(row["created_at"]),
        updated_at=ts(row["updated_at"]),
        env=json.loads(row["env"]),
        config=json.loads(row["config"]),
    )


def session_from(row: Row, ts: TsIn) -> SessionRecord:
    return SessionRecord(
        id=row["id"],
        agent_name=row["agent_name"],
        tenant_id=row["tenant_id"],
        sandbox_id=row["sandbox_id"],
        status=row["status"],
        created_at=ts(row["created_at"]),
        last_active_at=ts(row["last_active_at"]),
        parent_session_id=row["parent_session_id"],
        config=valid.load_json_model(SessionConfig, row["config"]),
        usage=valid.load_json_model(Usage, row["usage"]),
        num_turns=row["num_turns"],
        last_seq=row["last_seq"],
    )


def message_from(row: Row, ts: TsIn) -> MessageRecord:
    return MessageRecord(
        id=row["id"],
        session_id=row["session_id"],
        sequence=row["sequence"],
        role=row["role"],
        content=json.loads(row["content"]),
        created_at=ts(row["created_at"]),
    )


def event_from(row: Row, ts: TsIn) -> EventRecord:
    return EventRecord(
        session_id=row["session_id"],
        seq=row["seq"],
        type=row["type"],
        data=json.loads(row["data"]),
        created_at=ts(row["created_at"]),
    )


def usage_from(row: Row, ts: TsIn) -> UsageRecord:
    return UsageRecord(
        session_id=row["session_id"],
        agent_name=row["agent_name"],
        turn=row["turn"],
        model=row["model"],
        usage=valid.load_json_model(Usage, row["usage"]),
        created_at=ts(row["created_at"]),
        tool_calls=row["tool_calls"],
        messages=row["messages"],
        compute_ms=row["compute_ms"],
    )


def tenant_name(tenant: str, name: str) -> str:
    """The agents table's unique key: agent names are unique per tenant (migration 8)."""
    return f"{tenant}/{name}"


def columns(cols: Sequence[str]) -> str:
    return ", ".join(cols)


async def with_retry(
    op: Callable[[], Awaitable[T]],
    *,
    what: str,
    transient: Callable[[BaseException], bool],
    timeout_s: float,
    on_retry: Callable[[], None] | None = None,
) -> T:
    """Run ``op`` until it succeeds, retrying transient failures with backoff.

    Gives up with :class:`StoreError` after ``timeout_s`` of transient failures, or at
    once on any other failure. ``op`` must be safe to repeat (our writes are idempotent).
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    attempt = 0
    while True:
        attempt += 1
        try:
            return await op()
        except StoreError:
            raise
        except Exception as exc:
            if not transient(exc):
                raise StoreError(f"{what} failed: {type(exc).__name__}: {exc}") from exc
            left = deadline - time.monotonic()
            if left <= 0:
                raise StoreError(
                    f"{what} failed after {attempt} attempts over {timeout_s:.0f}s; "
                    f"the database is unreachable ({type(exc).__name__}: {exc}). "
                    "Check that it is running and that the URL is right.",
                ) from exc
            if on_retry is not None:
                on_retry()
            logger.warning(
                "%s: transient failure (%s: %s), retry %d in %.2fs",
                what,
                type(exc).__name__,
                exc,
                attempt,
                min(delay, left),
            )
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, 1.0)
