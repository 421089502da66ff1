"""The Store contract, run against SQLite and a real throwaway Postgres."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ash_ray.config import Settings
from ash_ray.errors import StoreError
from ash_ray.models import (
    EventRecord,
    MessageRecord,
    SessionConfig,
    SessionRecord,
    Usage,
    UsageRecord,
    WriteBatch,
)
from ash_ray.store import PostgresStore, SqliteStore, Store, open_store
from ash_ray.store.schema import LATEST_VERSION

T0 = datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
StoreFactory = Callable[[], PostgresStore | SqliteStore]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Builds unopened stores that all point at the same (fresh) database."""
    if request.param == "sqlite":
        return lambda: SqliteStore(tmp_path / "db" / "ash.db", tmp_path / "snapshots")
    url = request.getfixturevalue("postgres_db_url")
    return lambda: PostgresStore(url)


@pytest.fixture
async def store(make_store: StoreFactory) -> AsyncIterator[PostgresStore | SqliteStore]:
    s = make_store()
    await s.open()
    yield s
    await s.close()


def session(
    n: int = 0, *, agent: str = "a", status: str = "active", **kw: Any
) -> SessionRecord:
    return SessionRecord(
        id=kw.pop("id", str(uuid.uuid4())),
        agent_name=agent,
        sandbox_id=f"sb-{n}",
        status=status,  # type: ignore[arg-type]
        created_at=T0 + timedelta(seconds=n),
        last_active_at=T0 + timedelta(seconds=n, milliseconds=5),
        **kw,
    )


def message(sid: str, seq: int, content: Any = None) -> MessageRecord:
    return MessageRecord(
        id=str(uuid.uuid4()),
        session_id=sid,
        sequence=seq,
        role="user" if seq % 2 else "assistant",
        content=content if content is not None else f"m{seq}",
        created_at=T0 + timedelta(milliseconds=seq),
    )


def event(sid: str, seq: int, **data: Any) -> EventRecord:
    return EventRecord(
        session_id=sid,
        seq=seq,
        type="text_delta",
        data={"delta": f"e{seq}", **data},
        created_at=T0 + timedelta(microseconds=seq),
    )


async def test_implements_the_protocol(store: Store) -> None:
    assert isinstance(store, Store)
    assert store.kind in ("sqlite", "postgres")


async def test_agent_upsert_bumps_version_and_keeps_identity(store: Store) -> None:
    first = await store.upsert_agent("helper", "/agents/helper")
    assert uuid.UUID(first.id) and first.version == 1 and first.path == "/agents/helper"
    assert first.created_at == first.updated_at

    second = await store.upsert_agent("helper", "/agents/helper-v2")
    assert (second.id, second.created_at) == (first.id, first.created_at)
    assert second.version == 2 and second.path == "/agents/helper-v2"
    assert second.updated_at >= first.updated_at
    assert await store.get_agent("helper") == second

    await store.upsert_agent("alpha", "/agents/alpha")
    assert [a.name for a in await store.list_agents()] == ["alpha", "helper"]

    assert await store.delete_agent("helper") is True
    assert await store.delete_agent("helper") is False
    assert await store.get_agent("helper") is None
    assert [a.name for a in await store.list_agents()] == ["alpha"]


async def test_session_round_trip_and_upsert(store: Store) -> None:
    rec = session(
        parent_session_id=str(uuid.uuid4()),
        config=SessionConfig(model="m", extra_env={"A": "1"}, allowed_tools=["Bash"]),
        usage=Usage(input_tokens=3, output_tokens=4, cache_read_input_tokens=5),
        num_turns=2,
        last_seq=17,
    )
    await store.write(WriteBatch(sessions=[rec]))
    assert await store.get_session(rec.id) == rec
    assert await store.get_session(str(uuid.uuid4())) is None

    moved = rec.model_copy(update={"status": "paused", "last_seq": 30, "created_at": T0})
    await store.write(WriteBatch(sessions=[moved]))
    got = await store.get_session(rec.id)
    assert got is not None and got.status == "paused" and got.last_seq == 30
    assert got.created_at == rec.created_at  # created_at never changes


async def test_last_record_of_a_session_in_one_batch_wins(store: Store) -> None:
    rec = session()
    later = rec.model_copy(update={"status": "stopped", "num_turns": 9})
    await store.write(WriteBatch(sessions=[rec, later]))
    got = await store.get_session(rec.id)
    assert got is not None and (got.status, got.num_turns) == ("stopped", 9)


async def test_list_sessions_newest_first_with_filters_and_paging(store: Store) -> None:
    recs = [
        session(0, agent="a", status="active"),
        session(1, agent="b", status="paused"),
        session(2, agent="a", status="paused"),
        session(3, agent="b", status="active"),
        session(4, agent="a", status="ended"),
    ]
    await store.write(WriteBatch(sessions=recs))

    def ids(found: list[SessionRecord]) -> list[str]:
        return [s.sandbox_id for s in found]

    assert ids(await store.list_sessions()) == ["sb-4", "sb-3", "sb-2", "sb-1", "sb-0"]
    assert ids(await store.list_sessions(agent="a")) == ["sb-4", "sb-2", "sb-0"]
    assert ids(await store.list_sessions(status="paused")) == ["sb-2", "sb-1"]
    assert ids(await store.list_sessions(agent="b", status="active")) == ["sb-3"]
    assert ids(await store.list_sessions(limit=2)) == ["sb-4", "sb-3"]
    assert ids(await store.list_sessions(limit=2, offset=2)) == ["sb-2", "sb-1"]
    assert ids(await store.list_sessions(offset=10)) == []
    assert await store.list_sessions(agent="nobody") == []


async def test_messages_in_order_with_after_and_limit(store: Store) -> None:
    sid, other = str(uuid.uuid4()), str(uuid.uuid4())
    blocks = [
        {"type": "text", "text": "héllo ✓ \x00 nul"},
        {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}},
    ]
    batch = WriteBatch(
        messages=[message(sid, 3), message(sid, 1), message(sid, 2, blocks), message(other, 1)]
    )
    await store.write(batch)
    found = await store.list_messages(sid)
    assert [m.sequence for m in found] == [1, 2, 3]
    assert found[1].content == blocks
    assert found[1] == batch.messages[2]
    assert [m.sequence for m in await store.list_messages(sid, after=1)] == [2, 3]
    assert [m.sequence for m in await store.list_messages(sid, after=1, limit=1)] == [2]
    assert await store.list_messages(sid, after=3) == []
    assert len(await store.list_messages(other)) == 1


async def test_events_in_order_with_after_and_limit(store: Store) -> None:
    sid = str(uuid.uuid4())
    events = [event(sid, seq) for seq in (5, 1, 4, 2, 3)]
    await store.write(WriteBatch(events=events))
    found = await store.list_events(sid)
    assert [e.seq for e in found] == [1, 2, 3, 4, 5]
    assert found[0] == events[1]
    assert [e.seq for e in await store.list_events(sid, after=2)] == [3, 4, 5]
    assert [e.seq for e in await store.list_events(sid, after=2, limit=2)] == [3, 4]
    assert await store.list_events(str(uuid.uuid4())) == []


async def test_a_retried_batch_is_harmless(store: Store) -> None:
    rec = session()
    usage = UsageRecord(
        session_id=rec.id, agent_name="a", turn=1, model="m", usage=Usage(output_tokens=7),
        created_at=T0,
    )  # fmt: skip
    batch = WriteBatch(
        sessions=[rec],
        messages=[message(rec.id, 1), message(rec.id, 2)],
        events=[event(rec.id, s) for s in range(1, 11)],
        usage=[usage],
    )
    await store.write(batch)
    await store.write(batch)
    # An overlapping batch adds the new rows and leaves the old ones as first written.
    await store.write(WriteBatch(events=[event(rec.id, s, again=True) for s in range(5, 16)]))
    found = await store.list_events(rec.id)
    assert [e.seq for e in found] == list(range(1, 16))
    assert "again" not in found[4].data and found[10].data["again"] is True
    assert len(await store.list_messages(rec.id)) == 2
    assert await store.list_usage(rec.id) == [usage]


async def test_usage_per_session_and_overall(store: Store) -> None:
    s1, s2 = str(uuid.uuid4()), str(uuid.uuid4())
    recs = [
        UsageRecord(
            session_id=sid, agent_name="a", turn=turn, model="claude", created_at=T0 + timedelta(
                seconds=i
            ), usage=Usage(input_tokens=10 * i, output_tokens=i, cache_creation_input_tokens=1),
        )
        for i, (sid, turn) in enumerate([(s1, 1), (s2, 1), (s1, 2)])
    ]  # fmt: skip
    await store.write(WriteBatch(usage=recs))
    assert await store.list_usage(s1) == [recs[0], recs[2]]
    assert await store.list_usage() == recs
    assert await store.list_usage(str(uuid.uuid4())) == []


async def test_snapshots_round_trip_replace_and_delete(store: Store) -> None:
    sid = str(uuid.uuid4())
    assert await store.get_snapshot(sid) is None
    data = bytes(range(256)) * 4096  # 1 MiB with every byte value
    await store.put_snapshot(sid, data)
    assert await store.get_snapshot(sid) == data
    await store.put_snapshot(sid, b"second")
    assert await store.get_snapshot(sid) == b"second"
    await store.delete_snapshot(sid)
    assert await store.get_snapshot(sid) is None
    await store.delete_snapshot(sid)  # deleting nothing is fine


async def test_delete_session_removes_everything(store: Store) -> None:
    keep, drop = session(0), session(1)
    await store.write(
        WriteBatch(
            sessions=[keep, drop],
            messages=[message(keep.id, 1), message(drop.id, 1)],
            events=[event(keep.id, 1), event(drop.id, 1)],
        )
    )
    await store.put_snapshot(drop.id, b"tar")
    assert await store.delete_session(drop.id) is True
    assert await store.delete_session(drop.id) is False
    assert await store.get_session(drop.id) is None
    assert await store.list_messages(drop.id) == [] and await store.list_events(drop.id) == []
    assert await store.get_snapshot(drop.id) is None
    assert len(await store.list_events(keep.id)) == 1


async def test_reopening_keeps_everything_and_migrates_once(make_store: StoreFactory) -> None:
    rec = session(num_turns=3)
    first = make_store()
    await first.open()
    assert await first.schema_version() == LATEST_VERSION
    agent = await first.upsert_agent("kept", "/p")
    await first.write(
        WriteBatch(sessions=[rec], messages=[message(rec.id, 1)], events=[event(rec.id, 1)])
    )
    await first.put_snapshot(rec.id, b"workspace")
    await first.close()
    await first.close()  # twice is fine

    async with make_store() as again:
        assert await again.schema_version() == LATEST_VERSION
        assert await again.get_agent("kept") == agent
        assert await again.get_session(rec.id) == rec
        assert len(await again.list_messages(rec.id)) == 1
        assert len(await again.list_events(rec.id)) == 1
        assert await again.get_snapshot(rec.id) == b"workspace"
        assert (await again.upsert_agent("kept", "/p")).version == 2


async def test_concurrent_opens_and_writes(make_store: StoreFactory) -> None:
    stores = [make_store() for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))  # racing migrations
    try:
        sid = str(uuid.uuid4())
        batches = [
            WriteBatch(events=[event(sid, i * 10 + k + 1) for k in range(10)]) for i in range(20)
        ]
        await asyncio.gather(*(stores[i % 3].write(b) for i, b in enumerate(batches)))
        assert [e.seq for e in await stores[0].list_events(sid)] == list(range(1, 201))
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_racing_opens_of_a_new_sqlite_file_all_succeed(tmp_path: Path) -> None:
    """Switching a new file to WAL skips SQLite's busy handler; an opener that loses the
    race (a registry restarting while the old one still holds the file) must retry."""
    for round_ in range(25):
        stores = [open_store(Settings(data_dir=tmp_path / str(round_))) for _ in range(4)]
        try:
            await asyncio.gather(*(s.open() for s in stores))
        finally:
            await asyncio.gather(*(s.close() for s in stores))


async def test_a_closed_store_says_so(make_store: StoreFactory) -> None:
    s = make_store()
    with pytest.raises(StoreError, match="not open"):
        await s.get_agent("x")


def test_open_store_picks_by_settings(tmp_path: Path) -> None:
    sqlite = open_store(Settings(data_dir=tmp_path))
    assert isinstance(sqlite, SqliteStore)
    assert sqlite.path == tmp_path / "ash.db"
    assert sqlite.snapshot_dir == tmp_path / "snapshots"
    pg = open_store(Settings(data_dir=tmp_path, database_url="postgres://u:p@db:5432/ash"))
    assert isinstance(pg, PostgresStore) and pg.kind == "postgres"
