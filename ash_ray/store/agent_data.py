"""Agents as data in the Store: archives per version, env and config, Ash's versions.

One mixin for both dialects. SQL is written once with ``?`` placeholders; a dialect
supplies :meth:`AgentData._agent_tx` (run a function in one retried transaction),
timestamp conversion, and where archive bytes live (:meth:`_archive_columns`,
:meth:`_archive_bytes`): Postgres in the row, SQLite in a file under the data dir.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol, TypeVar

from ash_ray.models import DEFAULT_TENANT, AgentRecord, AgentVersionRecord, new_id, utcnow
from ash_ray.store import _files as files
from ash_ray.store import _rows as rows

T = TypeVar("T")


class Exec(Protocol):
    async def __call__(self, sql: str, *args: Any) -> list[Any]: ...


TxFn = Callable[[Exec], Awaitable[T]]


class AgentData:
    """Store methods for agent archives and versions (mixed into each store)."""

    # -- supplied by the dialect

    async def _agent_tx(self, what: str, fn: TxFn[T]) -> T:
        raise NotImplementedError

    def _ts_param(self, ts: datetime) -> Any:
        raise NotImplementedError

    def _ts_value(self, value: Any) -> datetime:
        raise NotImplementedError

    async def _archive_columns(self, sha: str, data: bytes) -> tuple[str | None, bytes | None]:
        """(location, data) columns of a new archive row."""
        raise NotImplementedError

    async def _archive_bytes(self, row: Any) -> bytes | None:
        raise NotImplementedError

    async def _archives_dropped(self, shas: set[str]) -> None:
        """Archives no row refers to any longer (SQLite removes their files)."""

    # -- agents

    def _agent_row(self, row: Any) -> AgentRecord:
        return rows.agent_from(row, self._ts_value)

    async def save_agent(
        self, name: str, path: str, archive: bytes, env: dict[str, str] | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> AgentRecord:
        """Insert the tenant's ``name`` at version 1 or bump its version, storing ``archive``.

        ``env`` replaces the stored env when given. Row and archive commit together.
        Archives and versions are keyed by the tenant-qualified name (``tenant_name``).
        """
        key = rows.tenant_name(tenant, name)
        sha = files.sha256(archive)
        location, blob = await self._archive_columns(sha, archive)
        now = self._ts_param(utcnow())

        async def fn(ex: Exec) -> AgentRecord:
            found = await ex("SELECT * FROM agents WHERE tenant_name = ?", key)
            if found:
                new_env = json.dumps(env) if env is not None else found[0]["env"]
                got = await ex(
                    "UPDATE agents SET version = version + 1, path = ?, env = ?, updated_at = ? "
                    "WHERE tenant_name = ? RETURNING *",
                    path, new_env, now, key,
                )  # fmt: skip
            else:
                got = await ex(
                    "INSERT INTO agents (id, tenant_name, tenant_id, name, version, path, "
                    "created_at, updated_at, env, config) "
                    "VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, '{}') RETURNING *",
                    new_id(), key, tenant, name, path, now, now, json.dumps(env or {}),
                )  # fmt: skip
            agent = self._agent_row(got[0])
            await ex(
                "INSERT INTO agent_archives (agent_name, version, size_bytes, sha256, location, "
                "data, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                key, agent.version, len(archive), sha, location, blob, now,
            )  # fmt: skip
            return agent

        return await self._agent_tx("save_agent", fn)

    async def update_agent(
        self, name: str, *, env: dict[str, str] | None = None,
        config: dict[str, Any] | None = None, tenant: str = DEFAULT_TENANT,
    ) -> AgentRecord | None:
        """Set the tenant's agent's env and/or config (no new version); None if unknown."""
        key = rows.tenant_name(tenant, name)

        async def fn(ex: Exec) -> AgentRecord | None:
            found = await ex("SELECT * FROM agents WHERE tenant_name = ?", key)
            if not found:
                return None
            got = await ex(
                "UPDATE agents SET env = ?, config = ?, updated_at = ? "
                "WHERE tenant_name = ? RETURNING *",
                json.dumps(env) if env is not None else found[0]["env"],
                json.dumps(config) if config is not None else found[0]["config"],
                self._ts_param(utcnow()), key,
            )  # fmt: skip
            return self._agent_row(got[0])

        return await self._agent_tx("update_agent", fn)

    async def put_agent_archive(self, name: str, version: int, archive: bytes) -> str:
        """Store the archive of an existing version (agents deployed before archives)."""
        sha = files.sha256(archive)
        location, blob = await self._archive_columns(sha, archive)

        async def fn(ex: Exec) -> None:
            await ex(
                "INSERT INTO agent_archives (agent_name, version, size_bytes, sha256, location, "
                "data, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                name, version, len(archive), sha, location, blob, self._ts_param(utcnow()),
            )  # fmt: skip

        await self._agent_tx("put_agent_archive", fn)
        return sha

    async def agent_archive_sha(self, name: str, version: int) -> str | None:
        """The sha256 of the agent's archive at ``version``, or None."""

        async def fn(ex: Exec) -> str | None:
            found = await ex(
                "SELECT sha256 FROM agent_archives WHERE agent_name = ? AND version = ?",
                name, version,
            )  # fmt: skip
            return str(found[0]["sha256"]) if found else None

        return await self._agent_tx("agent_archive_sha", fn)

    async def get_agent_archive(self, name: str, version: int) -> bytes | None:
        """The archive of the agent at ``version``, or None."""

        async def fn(ex: Exec) -> Any:
            found = await ex(
                "SELECT * FROM agent_archives WHERE agent_name = ? AND version = ?", name, version
            )
            return found[0] if found else None

        row = await self._agent_tx("get_agent_archive", fn)
        return None if row is None else await self._archive_bytes(row)

    async def delete_agent_data(self, name: str) -> None:
        """Remove the agent's archives and versions (the agent row is delete_agent's)."""

        async def fn(ex: Exec) -> set[str]:
            shas = {r["sha256"] for r in await ex(
                "SELECT sha256 FROM agent_archives WHERE agent_name = ?", name
            )}  # fmt: skip
            await ex("DELETE FROM agent_archives WHERE agent_name = ?", name)
            await ex("DELETE FROM agent_versions WHERE agent_name = ?", name)
            kept = {r["sha256"] for r in await ex("SELECT DISTINCT sha256 FROM agent_archives")}
            return shas - kept

        await self._archives_dropped(await self._agent_tx("delete_agent_data", fn))

    # -- Ash's agent versions

    def _version_row(self, row: Any) -> AgentVersionRecord:
        kf = row["knowledge_files"]
        return AgentVersionRecord(
            # The table keys by ``<tenant>/<name>``; the record shows the plain name.
            id=row["id"], agent_name=row["agent_name"].split("/", 1)[-1],
            version_number=row["version_number"],
            name=row["name"], system_prompt=row["system_prompt"],
            release_notes=row["release_notes"], knowledge_files=json.loads(kf) if kf else None,
            is_active=bool(row["is_active"]), created_at=self._ts_value(row["created_at"]),
            updated_at=self._ts_value(row["updated_at"]),
        )

    async def list_agent_versions(self, name: str) -> list[AgentVersionRecord]:
        """The agent's versions by number."""

        async def fn(ex: Exec) -> list[Any]:
            return await ex(
                "SELECT * FROM agent_versions WHERE agent_name = ? ORDER BY version_number", name
            )

        return [self._version_row(r) for r in await self._agent_tx("list_agent_versions", fn)]

    async def get_agent_version(self, name: str, ref: str) -> AgentVersionRecord | None:
        """A version by number (``"3"``) or by id; None if the agent has no such version."""

        async def fn(ex: Exec) -> list[Any]:
            if ref.isdigit() and len(ref) < 18:
                return await ex(
                    "SELECT * FROM agent_versions WHERE agent_name = ? AND version_number = ?",
                    name, int(ref),
                )  # fmt: skip
            return await ex(
                "SELECT * FROM agent_versions WHERE agent_name = ? AND id = ?", name, ref
            )

        found = await self._agent_tx("get_agent_version", fn)
        return self._version_row(found[0]) if found else None

    async def active_agent_version(self, name: str) -> AgentVersionRecord | None:
        async def fn(ex: Exec) -> list[Any]:
            return await ex(
                "SELECT * FROM agent_versions WHERE agent_name = ? AND is_active = 1", name
            )

        found = await self._agent_tx("active_agent_version", fn)
        return self._version_row(found[0]) if found else None

    async def create_agent_version(
        self, name: str, *, title: str | None, system_prompt: str | None,
        release_notes: str | None, knowledge_files: list[str] | None,
    ) -> AgentVersionRecord:
        """A new version numbered after the highest one (default name ``v<N>``)."""
        now = self._ts_param(utcnow())

        async def fn(ex: Exec) -> Any:
            top = await ex(
                "SELECT max(version_number) AS n FROM agent_versions WHERE agent_name = ?", name
            )
            number = int(top[0]["n"] or 0) + 1
            got = await ex(
                "INSERT INTO agent_versions (id, agent_name, version_number, name, system_prompt, "
                "release_notes, knowledge_files, is_active, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?) RETURNING *",
                new_id(), name, number, title or f"v{number}", system_prompt, release_notes,
                None if knowledge_files is None else json.dumps(knowledge_files), now, now,
            )  # fmt: skip
            return got[0]

        return self._version_row(await self._agent_tx("create_agent_version", fn))

    async def update_agent_version(
        self, version_id: str, fields: dict[str, Any]
    ) -> AgentVersionRecord | None:
        """Set some of name, system_prompt, release_notes, knowledge_files."""
        allowed = ("name", "system_prompt", "release_notes", "knowledge_files")
        sets = {k: v for k, v in fields.items() if k in allowed}
        if "knowledge_files" in sets and sets["knowledge_files"] is not None:
            sets["knowledge_files"] = json.dumps(sets["knowledge_files"])
        assign = "".join(f"{k} = ?, " for k in sets)

        async def fn(ex: Exec) -> list[Any]:
            return await ex(
                f"UPDATE agent_versions SET {assign}updated_at = ? WHERE id = ? RETURNING *",
                *sets.values(), self._ts_param(utcnow()), version_id,
            )  # fmt: skip

        found = await self._agent_tx("update_agent_version", fn)
        return self._version_row(found[0]) if found else None

    async def delete_agent_version(self, version_id: str) -> bool:
        async def fn(ex: Exec) -> list[Any]:
            return await ex("DELETE FROM agent_versions WHERE id = ? RETURNING id", version_id)

        return bool(await self._agent_tx("delete_agent_version", fn))

    async def activate_agent_version(self, name: str, version_id: str) -> None:
        """Make this version the agent's only active one."""
        now = self._ts_param(utcnow())

        async def fn(ex: Exec) -> None:
            await ex(
                "UPDATE agent_versions SET is_active = 0, updated_at = ? "
                "WHERE agent_name = ? AND is_active = 1",
                now, name,
            )  # fmt: skip
            await ex(
                "UPDATE agent_versions SET is_active = 1, updated_at = ? WHERE id = ?",
                now, version_id,
            )  # fmt: skip

        await self._agent_tx("activate_agent_version", fn)
