"""Unit-test fixtures: a fake Messages API on loopback and an SDK client pointed at it;
a store on SQLite and on a throwaway Postgres for the jobs stores (queue, usage, evals)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anthropic
import pytest

from ash_ray.store import PostgresStore, SqliteStore
from ash_ray.store._sql import Db
from ash_ray.testing.fake_anthropic import FakeAnthropic


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture
async def client(fake: FakeAnthropic) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(base_url=fake.url, api_key="sk-test", max_retries=0)
    yield client
    await client.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Db]:
    if request.param == "sqlite":
        store: SqliteStore | PostgresStore = SqliteStore(tmp_path / "ash.db", tmp_path / "snap")
    else:
        store = PostgresStore(request.getfixturevalue("postgres_db_url"))
    await store.open()
    yield Db(store)
    await store.close()
