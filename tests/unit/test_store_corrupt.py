"""Issue 10: what the store writes reads back, and a row it cannot read never breaks a read.

Corrupt rows are written with raw SQL into SQLite and into a real throwaway Postgres, as
an older version, a manual edit or a bug elsewhere would leave them.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ash_ray.errors import StoreError
from ash_ray.models import SessionConfig, SessionRecord, Usage, UsageRecord, WriteBatch
from ash_ray.store import PostgresStore, SqliteStore
from ash_ray.store import _valid as valid
from tests.unit.test_store import T0, event, message, session

Raw = Callable[[str, tuple[Any, ...]], Awaitable[None]]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def pair(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[PostgresStore | SqliteStore, Raw]]:
    """An open store and a way to run raw SQL (``?`` placeholders) on its database."""
    if request.param == "sqlite":
        path = tmp_path / "ash.db"
        store: PostgresStore | SqliteStore = SqliteStore(path, tmp_path / "snapshots")

        async def raw(sql: str, args: tuple[Any, ...]) -> None:
            with sqlite3.connect(path) as db:
                db.execute(sql, args)

    else:
        url = request.getfixturevalue("postgres_db_url")
        store = PostgresStore(url)

        async def raw(sql: str, args: tuple[Any, ...]) -> None:
            n = iter(range(1, 100))
            pg_sql = "".join(f"${next(n)}" if ch == "?" else ch for ch in sql)
            conn = await asyncpg.connect(url)
            try:
                await conn.execute(pg_sql, *args)
            finally:
                await conn.close()

    await store.open()
    yield store, raw
    await store.close()


def _ts(store: PostgresStore | SqliteStore, n: int) -> Any:
    ts = T0 + timedelta(seconds=n)
    return ts.isoformat(timespec="microseconds") if store.kind == "sqlite" else ts


async def _bad_session(
    store: PostgresStore | SqliteStore, raw: Raw, n: int, *, config: str = "{}",
    status: str = "active", usage: str = "{}",
) -> str:
    sid = f"bad-{n}-{uuid.uuid4()}"
    await raw(
        "INSERT INTO sessions (id, agent_name, sandbox_id, status, created_at, last_active_at, "
        "parent_session_id, config, usage, num_turns, last_seq) "
        "VALUES (?, 'a', 'sb', ?, ?, ?, NULL, ?, ?, 0, 0)",
        (sid, status, _ts(store, n), _ts(store, n), config, usage),
    )
    return sid


async def _all(store: PostgresStore | SqliteStore, status: str, page: int) -> list[str]:
    """Page through sessions as the registry's recovery does: until a short page."""
    out: list[str] = []
    offset = 0
    while True:
        found = await store.list_sessions(status=status, limit=page, offset=offset)
        out.extend(s.id for s in found)
        if len(found) < page:
            return out
        offset += page


async def test_null_extra_env_is_stored_as_empty_and_reads_back(
    pair: tuple[PostgresStore | SqliteStore, Raw],
) -> None:
    store, _ = pair
    rec = session(1)
    # model_copy skips validation: how PATCH {"extraEnv": null} once reached the store.
    config = rec.config.model_copy(update={"extra_env": None, "model": "m"})
    await store.write(WriteBatch(sessions=[rec.model_copy(update={"config": config})]))
    got = await store.get_session(rec.id)
    assert got is not None and got.config == SessionConfig(model="m", extra_env={})
    assert [s.id for s in await store.list_sessions()] == [rec.id]


async def test_null_in_an_old_row_reads_as_the_default(
    pair: tuple[PostgresStore | SqliteStore, Raw],
) -> None:
    """A row such a PATCH stored before the fix is readable, not skipped."""
    store, raw = pair
    sid = await _bad_session(store, raw, 1, config='{"extra_env":null,"model":"m"}')
    got = await store.get_session(sid)
    assert got is not None and got.config.extra_env == {} and got.config.model == "m"


async def test_unreadable_session_rows_are_skipped_by_lists_and_recovery(
    pair: tuple[PostgresStore | SqliteStore, Raw],
) -> None:
    store, raw = pair
    good = [session(n, status="active") for n in range(6)]
    await store.write(WriteBatch(sessions=good))
    bad = [
        await _bad_session(store, raw, 10, config="{not json"),
        await _bad_session(store, raw, 11, config='{"extra_env": {"A": 1}}'),
        await _bad_session(store, raw, 12, usage='{"input_tokens": "many"}'),
        await _bad_session(store, raw, 13, status="exploded"),
        await _bad_session(store, raw, 14, status="active", config="[]"),
    ]
    skipped = valid.skipped_rows
    listed = {s.id for s in await store.list_sessions()}
    assert listed == {s.id for s in good}
    assert valid.skipped_rows - skipped == len(bad)
    # Pages of 2 with bad rows in them: a short page must still mean "no more rows", so
    # the store reads on past a skipped row. Offsets count rows, so a later page may
    # repeat a session (harmless to recovery); none may be missing.
    assert set(await _all(store, "active", 2)) == {s.id for s in good}
    with pytest.raises(StoreError, match="cannot be read"):
        await store.get_session(bad[0])


async def test_unreadable_messages_events_usage_are_skipped(
    pair: tuple[PostgresStore | SqliteStore, Raw],
) -> None:
    store, raw = pair
    rec = session(1)
    usage = UsageRecord(
        session_id=rec.id, agent_name="a", turn=1, model="m", usage=Usage(), created_at=T0
    )
    await store.write(
        WriteBatch(
            sessions=[rec],
            messages=[message(rec.id, 1), message(rec.id, 3)],
            events=[event(rec.id, 1), event(rec.id, 3)],
            usage=[usage],
        )
    )
    await raw(
        "INSERT INTO messages (session_id, sequence, id, role, content, created_at) "
        "VALUES (?, 2, ?, 'assistant', '{broken', ?)",
        (rec.id, str(uuid.uuid4()), _ts(store, 2)),
    )
    await raw(
        "INSERT INTO events (session_id, seq, type, data, created_at) VALUES (?, 2, 't', '[1]', ?)",
        (rec.id, _ts(store, 2)),
    )
    await raw(
        "INSERT INTO usage (session_id, turn, created_at, agent_name, model, usage) "
        "VALUES (?, 2, ?, 'a', 'm', 'null')",
        (rec.id, _ts(store, 2)),
    )
    assert [m.sequence for m in await store.list_messages(rec.id)] == [1, 3]
    assert [e.seq for e in await store.list_events(rec.id)] == [1, 3]
    assert [u.turn for u in await store.list_usage(rec.id)] == [1]


async def test_a_record_that_would_not_read_back_is_left_out_not_the_batch(
    pair: tuple[PostgresStore | SqliteStore, Raw],
) -> None:
    store, _ = pair
    rec = session(1, status="active")
    await store.write(WriteBatch(sessions=[rec]))
    broken = rec.model_copy(update={"status": "exploded", "last_seq": 2})
    other = session(2)
    bad_event = event(rec.id, 2).model_copy(update={"data": ["not", "an", "object"]})
    bad_message = message(rec.id, 2).model_copy(update={"content": {1j}})
    await store.write(
        WriteBatch(
            sessions=[broken, other],
            messages=[bad_message, message(rec.id, 1)],
            events=[event(rec.id, 1), bad_event],
        )
    )
    kept = await store.get_session(rec.id)
    assert kept is not None and kept.status == "active"  # its last good row
    assert await store.get_session(other.id) is not None
    assert [m.sequence for m in await store.list_messages(rec.id)] == [1]
    assert [e.seq for e in await store.list_events(rec.id)] == [1]
    assert {s.id for s in await store.list_sessions()} == {rec.id, other.id}


def test_drop_nulls_keeps_nullable_fields_and_required_nulls() -> None:
    data = {"model": None, "extra_env": None, "allowed_tools": None}
    assert valid.drop_nulls(SessionConfig, data) == {"model": None, "allowed_tools": None}
    assert valid.drop_nulls(SessionRecord, {"id": None, "config": data}) == {
        "id": None,
        "config": {"model": None, "allowed_tools": None},
    }
