"""What only the Postgres store does: survive server restarts, give up cleanly."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Iterator

import pytest

from ash_ray.errors import StoreError
from ash_ray.models import EventRecord, SessionRecord, WriteBatch, utcnow
from ash_ray.store import PostgresStore
from ash_ray.store.postgres import redact
from ash_ray.testing.ports import free_port
from tests.pg import TempPostgres

pytestmark = pytest.mark.postgres


@pytest.fixture
def own_postgres(postgres_server: TempPostgres) -> Iterator[TempPostgres]:
    """A cluster of this test's own, to restart without disturbing the shared one."""
    with TempPostgres() as server:
        print(f"own postgres for this test: {server.url}")
        yield server


def batch(sid: str, first: int, n: int) -> WriteBatch:
    now = utcnow()
    return WriteBatch(
        sessions=[
            SessionRecord(
                id=sid, agent_name="a", sandbox_id="s", status="active",
                created_at=now, last_active_at=now, last_seq=first + n - 1,
            )
        ],
        events=[
            EventRecord(session_id=sid, seq=s, type="t", data={"n": s}, created_at=now)
            for s in range(first, first + n)
        ],
    )  # fmt: skip


async def test_restart_between_writes(own_postgres: TempPostgres) -> None:
    sid = str(uuid.uuid4())
    async with PostgresStore(own_postgres.url) as store:
        await store.write(batch(sid, 1, 10))
        await asyncio.to_thread(own_postgres.restart)
        await store.write(batch(sid, 11, 10))  # pooled connections died with the server
        assert [e.seq for e in await store.list_events(sid)] == list(range(1, 21))


@pytest.mark.slow
async def test_restart_while_writing_loses_nothing_acknowledged(
    own_postgres: TempPostgres,
) -> None:
    sids = [str(uuid.uuid4()) for _ in range(3)]
    acked: dict[str, list[int]] = {sid: [] for sid in sids}
    progressed = asyncio.Event()
    stop = asyncio.Event()

    async def writer(store: PostgresStore, sid: str) -> None:
        seq = 1
        try:
            while not stop.is_set():
                await store.write(batch(sid, seq, 20))
                acked[sid].extend(range(seq, seq + 20))
                seq += 20
                progressed.set()
        finally:
            progressed.set()

    def total() -> int:
        return sum(len(seqs) for seqs in acked.values())

    async def until_acked(count: int) -> None:
        async with asyncio.timeout(40):
            while total() < count:
                for task in tasks:
                    if task.done():
                        task.result()  # re-raises what stopped a writer
                        raise AssertionError("a writer stopped early")
                progressed.clear()
                await progressed.wait()

    async with PostgresStore(own_postgres.url, max_pool_size=4) as store:
        tasks = [asyncio.create_task(writer(store, sid)) for sid in sids]
        await until_acked(600)
        restart = asyncio.create_task(asyncio.to_thread(own_postgres.restart))
        await until_acked(total() + 60)  # writes were in flight across the restart
        await restart
        await until_acked(total() + 600)
        stop.set()
        await asyncio.gather(*tasks)
        assert store.retries >= 1
        for sid in sids:
            stored = [e.seq for e in await store.list_events(sid)]
            assert set(acked[sid]) <= set(stored), f"an acknowledged batch of {sid} was lost"
            assert stored == list(range(1, len(stored) + 1))
            got = await store.get_session(sid)
            assert got is not None and got.last_seq == stored[-1]


async def test_unreachable_database_raises_store_error_after_retrying() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/ash?sslmode=disable"
    store = PostgresStore(url, retry_timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(StoreError, match="unreachable"):
        await store.open()
    assert 0.4 < time.monotonic() - started < 5
    assert store.retries >= 2


async def test_postgres_scheme_and_url_redaction(postgres_db_url: str) -> None:
    async with PostgresStore(postgres_db_url.replace("postgresql://", "postgres://")) as store:
        assert (await store.upsert_agent("x", "/x")).version == 1
    assert redact("postgresql://u:s3cret@h:5432/db?sslmode=require") == (
        "postgresql://u:***@h:5432/db?sslmode=require"
    )
    with pytest.raises(StoreError, match="not a Postgres URL"):
        PostgresStore("mysql://u:s3cret@h/db")


def test_temp_postgres_cleans_up(postgres_server: TempPostgres) -> None:
    """The test helper leaves no server and no files behind."""
    with TempPostgres() as server:
        tmp, port = server.tmp, server.port
        assert tmp is not None and tmp.is_dir()
        assert server.create_database().startswith(f"postgresql://postgres@127.0.0.1:{port}/")
    assert not tmp.exists()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
