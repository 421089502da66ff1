"""Tenants in the Store (migration 8), on SQLite and a real throwaway Postgres."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ash_ray.crypto import KeyHasher, new_api_key, seal
from ash_ray.models import SessionRecord, WriteBatch
from ash_ray.store import PostgresStore, SqliteStore, schema
from ash_ray.tenants import ApiKeyRecord, CredentialRecord

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SECRET = "unit-test-credential-key"
PLAIN = "sk-ant-plaintext-never-stored-0123456789"
Factory = Callable[[], PostgresStore | SqliteStore]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    if request.param == "sqlite":
        return lambda: SqliteStore(tmp_path / "ash.db", tmp_path / "snapshots")
    url = request.getfixturevalue("postgres_db_url")
    return lambda: PostgresStore(url)


@pytest.fixture
async def store(make_store: Factory) -> AsyncIterator[PostgresStore | SqliteStore]:
    s = make_store()
    await s.open()
    yield s
    await s.close()


def _session(agent: str, tenant: str) -> SessionRecord:
    sid = str(uuid.uuid4())
    return SessionRecord(
        id=sid, agent_name=agent, tenant_id=tenant, sandbox_id=sid, status="active",
        created_at=T0, last_active_at=T0,
    )  # fmt: skip


async def test_existing_rows_become_the_default_tenants(
    make_store: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as m:  # a database of the last release (up to migration 7)
        m.setattr(schema, "MIGRATIONS", tuple(x for x in schema.MIGRATIONS if x.version <= 7))
        old = make_store()
        await old.open()
        ts = old._ts_db(T0)
        await old._query(
            "seed", "INSERT INTO agents (id, name, version, path, created_at, updated_at) "
            "VALUES (?, ?, 1, ?, ?, ?)", (str(uuid.uuid4()), "helper", "/agents/helper", ts, ts),
        )  # fmt: skip
        await old._query(
            "seed", "INSERT INTO sessions (id, agent_name, sandbox_id, status, created_at, "
            "last_active_at, config, usage, num_turns, last_seq) "
            "VALUES (?, 'helper', 'sb', 'paused', ?, ?, '{}', '{}', 0, 0)",
            (str(uuid.uuid4()), ts, ts),
        )  # fmt: skip
        await old.close()
    store = make_store()
    await store.open()
    try:
        agent = await store.get_agent("helper")
        assert agent is not None and (agent.name, agent.tenant_id) == ("helper", "default")
        assert [s.tenant_id for s in await store.list_sessions()] == ["default"]
        bumped = await store.upsert_agent("helper", "/agents/v2")
        assert (bumped.id, bumped.version) == (agent.id, 2)  # the same row, upserted
    finally:
        await store.close()


async def test_agents_of_one_name_in_two_tenants_are_two_agents(store: SqliteStore) -> None:
    a = await store.upsert_agent("helper", "/a", "acme")
    b = await store.upsert_agent("helper", "/b", "globex")
    assert a.id != b.id and (a.version, b.version) == (1, 1)
    got = await store.get_agent("helper", "globex")
    assert got is not None and got.path == "/b"
    assert await store.get_agent("helper") is None  # not the default tenant's
    assert [x.path for x in await store.list_agents("acme")] == ["/a"]
    assert await store.delete_agent("helper", "acme")
    assert await store.get_agent("helper", "acme") is None
    assert await store.get_agent("helper", "globex") is not None


async def test_sessions_list_by_tenant(store: SqliteStore) -> None:
    mine, theirs = _session("helper", "acme"), _session("helper", "globex")
    await store.write(WriteBatch(sessions=[mine, theirs]))
    assert [s.id for s in await store.list_sessions(tenant="acme")] == [mine.id]
    assert [s.id for s in await store.list_sessions(agent="helper", tenant="globex")] == [
        theirs.id
    ]
    assert len(await store.list_sessions()) == 2  # the registry's own scans see all
    got = await store.get_session(theirs.id)
    assert got is not None and got.tenant_id == "globex"


async def test_api_keys_are_found_by_hash_and_revoked_only_by_their_tenant(
    store: SqliteStore,
) -> None:
    hasher = KeyHasher(SECRET)
    key = new_api_key()
    rec = ApiKeyRecord(
        id=str(uuid.uuid4()), tenant_id="acme", label="ci", key_hash=hasher.hash(key),
        key_prefix=key[:8], created_at=T0,
    )  # fmt: skip
    await store.add_api_key(rec)
    found = await store.find_api_key(hasher.hash(key))
    assert found is not None and (found.id, found.tenant_id) == (rec.id, "acme")
    assert await store.find_api_key(KeyHasher(None).hash(key)) is None
    assert [k.id for k in await store.list_api_keys("acme")] == [rec.id]
    assert await store.list_api_keys("globex") == []
    assert not await store.delete_api_key(rec.id, "globex")
    assert await store.delete_api_key(rec.id, "acme")
    assert await store.find_api_key(hasher.hash(key)) is None


async def test_credentials_are_sealed_scoped_and_touched(
    store: SqliteStore, tmp_path: Path
) -> None:
    cid = str(uuid.uuid4())
    sealed = seal(SECRET, PLAIN, tenant="acme", credential_id=cid)
    rec = CredentialRecord(
        id=cid, tenant_id="acme", type="anthropic", label="prod", ciphertext=sealed.ciphertext,
        nonce=sealed.nonce, salt=sealed.salt, created_at=T0,
    )  # fmt: skip
    await store.add_credential(rec)
    listed = await store.list_credentials("acme")
    assert [(c.id, c.last_used_at) for c in listed] == [(cid, None)]
    assert listed[0].ciphertext == sealed.ciphertext
    assert await store.list_credentials("globex") == []
    assert await store.use_credential(cid, "globex") is None
    used = await store.use_credential(cid, "acme")
    assert used is not None and used.last_used_at is not None and used.last_used_at > T0
    if isinstance(store, SqliteStore):  # the database file never holds the key
        await store.close()
        for path in tmp_path.glob("ash.db*"):  # noqa: ASYNC240 (a test, on tmp files)
            assert PLAIN.encode() not in path.read_bytes(), path
        await store.open()
    assert not await store.delete_credential(cid, "globex")
    assert await store.delete_credential(cid, "acme")
    assert await store.use_credential(cid, "acme") is None
