"""Agent archives, env/config and Ash's agent versions in the Store (SQLite and Postgres)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ash_ray.agent import bundle
from ash_ray.errors import StoreError
from ash_ray.store import PostgresStore, SqliteStore


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[PostgresStore | SqliteStore]:
    if request.param == "sqlite":
        s: PostgresStore | SqliteStore = SqliteStore(tmp_path / "ash.db", tmp_path / "snaps")
    else:
        s = PostgresStore(request.getfixturevalue("postgres_db_url"))
    await s.open()
    yield s
    await s.close()


# Archives and versions are keyed by the tenant-qualified name (migration 8).
KEY = "default/bot"


def archive(**files: str) -> bytes:
    return bundle.pack({k: bundle.AgentFile(v.encode()) for k, v in files.items()})


async def test_each_deploy_is_a_new_version_whose_archive_stays_readable(store) -> None:
    v1 = archive(CLAUDE_md="one")
    a1 = await store.save_agent("bot", "/src/bot", v1, env={"TOKEN": "s1"})
    v2 = archive(CLAUDE_md="two")
    a2 = await store.save_agent("bot", "", v2)
    assert (a1.version, a2.version) == (1, 2)
    assert a2.env == {"TOKEN": "s1"}, "a deploy without env keeps the stored env"
    assert a2.public()["env"] == {"TOKEN": "***"}
    assert await store.get_agent_archive(KEY, 1) == v1
    assert await store.get_agent_archive(KEY, 2) == v2
    assert await store.get_agent_archive(KEY, 3) is None
    assert await store.agent_archive_sha(KEY, 2) == bundle_sha(v2)


def bundle_sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


async def test_env_and_config_update_without_a_new_version(store) -> None:
    await store.save_agent("bot", "", archive(CLAUDE_md="x"))
    got = await store.update_agent("bot", env={"A": "1"}, config={"preWarmCount": 0})
    assert got is not None and got.version == 1
    again = await store.get_agent("bot")
    assert again is not None
    assert (again.env, again.config) == ({"A": "1"}, {"preWarmCount": 0})
    assert await store.update_agent("nobody", env={}) is None


async def test_two_tenants_agents_of_one_name_keep_their_own_archives(store) -> None:
    one, two = archive(CLAUDE_md="a"), archive(CLAUDE_md="b")
    a = await store.save_agent("bot", "", one, tenant="t1")
    b = await store.save_agent("bot", "", two, tenant="t2")
    assert (a.version, b.version, a.tenant_id, b.tenant_id) == (1, 1, "t1", "t2")
    assert await store.get_agent_archive("t1/bot", 1) == one
    assert await store.get_agent_archive("t2/bot", 1) == two
    assert await store.get_agent("bot") is None, "the default tenant has no agent bot"
    await store.update_agent("bot", env={"K": "v"}, tenant="t1")
    got = await store.get_agent("bot", "t2")
    assert got is not None and got.env == {}


async def test_delete_agent_data_forgets_archives_and_versions(store) -> None:
    await store.save_agent("bot", "", archive(CLAUDE_md="x"))
    await store.create_agent_version(
        "bot", title=None, system_prompt="p", release_notes=None, knowledge_files=None
    )
    await store.delete_agent_data(KEY)
    assert await store.get_agent_archive(KEY, 1) is None
    assert await store.list_agent_versions(KEY) == []


async def test_versions_number_from_one_and_only_one_is_active(store) -> None:
    v1 = await store.create_agent_version(
        "bot", title=None, system_prompt="first", release_notes="n", knowledge_files=["a.md"]
    )
    v2 = await store.create_agent_version(
        "bot", title="named", system_prompt=None, release_notes=None, knowledge_files=None
    )
    assert (v1.version_number, v1.name, v2.version_number, v2.name) == (1, "v1", 2, "named")
    assert v1.knowledge_files == ["a.md"]
    assert (await store.get_agent_version("bot", "2")) == v2
    assert (await store.get_agent_version("bot", v1.id)) == v1
    assert await store.get_agent_version("other", v1.id) is None
    await store.activate_agent_version("bot", v1.id)
    await store.activate_agent_version("bot", v2.id)
    active = await store.active_agent_version("bot")
    assert active is not None and active.id == v2.id
    assert [v.is_active for v in await store.list_agent_versions("bot")] == [False, True]
    patched = await store.update_agent_version(v1.id, {"system_prompt": "changed"})
    assert patched is not None and patched.system_prompt == "changed" and patched.name == "v1"
    assert await store.delete_agent_version(v1.id)
    assert not await store.delete_agent_version(v1.id)
    v3 = await store.create_agent_version(
        "bot", title=None, system_prompt=None, release_notes=None, knowledge_files=None
    )
    assert v3.version_number == 3


async def test_sqlite_archive_changed_on_disk_is_refused(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "ash.db", tmp_path / "snaps") as s:
        await s.save_agent("bot", "", archive(CLAUDE_md="x"))
        (file,) = (tmp_path / "snaps" / "agents").iterdir()
        file.write_bytes(b"tampered")
        with pytest.raises(StoreError, match="sha256"):
            await s.get_agent_archive(KEY, 1)
