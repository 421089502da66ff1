"""Deployed agents: rows and archives in the Store, behind a short cache.

An agent is data. Deploying reads a folder once (``path``) or takes uploaded files, and
stores them as a versioned archive; every change of the files (deploy, upload, delete,
a new ``systemPrompt``) is a new version. Sessions record the version they started with
and their workers fetch that archive through :meth:`Agents.archive`, so nothing after a
deploy reads the folder the agent came from.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ash_ray.agent import AgentSpec, bundle, load_agent
from ash_ray.agent.bundle import AgentFile, Files, Limits
from ash_ray.agent.subagents import require_initial_agent
from ash_ray.config import Settings
from ash_ray.errors import AgentInvalid, AgentNotFound, InvalidInput, NotFound
from ash_ray.models import DEFAULT_TENANT, AgentRecord, AgentRef, SessionConfig, iso
from ash_ray.store._rows import tenant_name
from ash_ray.store.base import Store

logger = logging.getLogger(__name__)

# Agents change only through a registry; another cluster's registry on the same database
# (a blue/green upgrade) is seen within this many seconds.
AGENT_CACHE_S = 5.0


class Agents:
    """Agents by (tenant, name): two tenants' agents of one name never meet."""

    def __init__(
        self, store: Store, settings: Settings, cache_s: float = AGENT_CACHE_S
    ) -> None:
        self.store = store
        self.settings = settings
        self.limits = Limits(
            self.settings.agent_max_file_bytes,
            self.settings.agent_max_bytes,
            self.settings.agent_max_files,
        )
        self.cache_s = cache_s
        self._cache: dict[tuple[str, str], tuple[float, AgentRecord]] = {}
        # Changes of one agent's files are read-modify-write of its archive: one at a time.
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ deploy

    async def deploy(
        self,
        name: str,
        path: str | None = None,
        *,
        files: list[tuple[str, str]] | None = None,
        system_prompt: str | None = None,
        env: dict[str, str] | None = None,
        replace_files: bool = False,
        tenant: str = DEFAULT_TENANT,
    ) -> AgentRecord:
        """Deploy or redeploy (a new version) from a server folder and/or uploaded files.

        Without ``path`` the agent is managed: a redeploy starts from its current files,
        ``files`` are written over them, then ``CLAUDE.md`` from ``system_prompt`` (or a
        ``# <name>`` placeholder when there is none at all). ``replace_files`` starts
        from no files instead.
        """
        uploaded = bundle.decode_upload(files or [], self.limits)
        async with self._lock:
            if path is not None:
                folder = self.resolve(path)
                content = await asyncio.to_thread(_read_agent_folder, folder, self.limits)
                shown = str(folder)
            elif replace_files:
                content, shown = {}, ""
            else:
                content, shown = await self._current_files(name, tenant)
            content.update(uploaded)
            if system_prompt is not None:
                content["CLAUDE.md"] = AgentFile(system_prompt.encode(), 0o644, time.time())
            elif "CLAUDE.md" not in content:
                content["CLAUDE.md"] = AgentFile(f"# {name}\n".encode(), 0o644, time.time())
            return await self._save(name, shown, content, env, tenant)

    def resolve(self, path: str) -> Path:
        """A deploy path on the server: absolute, or relative to the data dir (as Ash)."""
        folder = Path(path).expanduser()
        if not folder.is_absolute():
            folder = self.settings.data_dir / folder
        if not (folder / "CLAUDE.md").is_file():
            raise AgentInvalid(
                f"{folder} has no CLAUDE.md; an agent folder needs one (its system prompt)",
                path=path,
            )
        return folder

    async def _current_files(self, name: str, tenant: str) -> tuple[Files, str]:
        """The agent's files at its latest version, and its path (none yet: empty)."""
        try:
            agent = await self.get(name, tenant, fresh=True)
        except AgentNotFound:
            return {}, ""
        return bundle.unpack(await self._archive_of(agent, agent.version)), agent.path

    # ------------------------------------------------------------------ files

    async def list_files(self, name: str, tenant: str = DEFAULT_TENANT) -> list[dict[str, Any]]:
        """``{path, size, modifiedAt}`` of every file of the latest version, by path."""
        content, _ = await self._existing_files(name, tenant)
        return [
            {"path": p, "size": len(f.data), "modifiedAt": _iso(f.mtime)}
            for p, f in sorted(content.items())
        ]

    async def read_file(self, name: str, path: str, tenant: str = DEFAULT_TENANT) -> bytes:
        """One file of the latest version; 400 for a path that escapes, 404 if absent."""
        rel = bundle.clean_path(path)
        content, _ = await self._existing_files(name, tenant)
        if rel not in content:
            raise NotFound(f"agent {name!r} has no file {rel!r}", agent=name, path=rel)
        return content[rel].data

    async def upload_files(
        self, name: str, files: list[tuple[str, str]], tenant: str = DEFAULT_TENANT
    ) -> AgentRecord:
        """Write base64 files over the latest version: a new version."""
        uploaded = bundle.decode_upload(files, self.limits)
        async with self._lock:
            content, path = await self._existing_files(name, tenant)
            content.update(uploaded)
            return await self._save(name, path, content, None, tenant)

    async def delete_file(
        self, name: str, path: str, tenant: str = DEFAULT_TENANT
    ) -> AgentRecord:
        """Remove one file (not CLAUDE.md): a new version."""
        rel = bundle.clean_path(path)
        async with self._lock:
            content, shown = await self._existing_files(name, tenant)
            if rel not in content:
                raise NotFound(f"agent {name!r} has no file {rel!r}", agent=name, path=rel)
            if rel == "CLAUDE.md":
                raise InvalidInput("CLAUDE.md cannot be deleted: it is the agent's system prompt")
            del content[rel]
            return await self._save(name, shown, content, None, tenant)

    async def _existing_files(self, name: str, tenant: str) -> tuple[Files, str]:
        agent = await self.get(name, tenant, fresh=True)
        return bundle.unpack(await self._archive_of(agent, agent.version)), agent.path

    async def _save(
        self, name: str, path: str, content: Files, env: dict[str, str] | None, tenant: str
    ) -> AgentRecord:
        self.limits.check_total(content)
        archive = await asyncio.to_thread(_checked_archive, content)
        agent = await self.store.save_agent(name, path, archive, env, tenant)
        self._cache[tenant, name] = (time.monotonic(), agent)
        logger.info("agent %s v%d stored (%d files)", name, agent.version, len(content))
        return agent

    # ------------------------------------------------------------------ read

    async def get(
        self, name: str, tenant: str = DEFAULT_TENANT, fresh: bool = False
    ) -> AgentRecord:
        cached = self._cache.get((tenant, name))
        if not fresh and cached is not None and time.monotonic() - cached[0] < self.cache_s:
            return cached[1]
        agent = await self.store.get_agent(name, tenant)
        if agent is None:
            self._cache.pop((tenant, name), None)
            raise AgentNotFound(f"agent {name!r} is not deployed", agent=name)
        self._cache[tenant, name] = (time.monotonic(), agent)
        return agent

    async def check_config(self, agent: AgentRecord, config: SessionConfig) -> None:
        """InvalidInput (400) when the config's initialAgent names no subagent of it."""
        if config.initial_agent is None:
            return
        version = config.agent_version or agent.version
        data = await self._archive_of(agent, version)
        spec = await asyncio.to_thread(_load_archive, data)
        require_initial_agent(spec, config.subagents, config.initial_agent)

    async def list(self, tenant: str = DEFAULT_TENANT) -> list[AgentRecord]:
        return await self.store.list_agents(tenant)

    async def delete(self, name: str, tenant: str = DEFAULT_TENANT) -> AgentRecord:
        agent = await self.get(name, tenant)
        self._cache.pop((tenant, name), None)
        await self.store.delete_agent(name, tenant)
        await self.store.delete_agent_data(tenant_name(tenant, name))

        return agent

    async def patch(
        self,
        name: str,
        *,
        env: dict[str, str] | None = None,
        config: dict[str, Any] | None = None,
        path: str | None = None,
        system_prompt: str | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> AgentRecord:
        """PATCH: ``path`` or ``systemPrompt`` make a new version; env/config do not."""
        agent = await self.get(name, tenant, fresh=True)
        if path is not None or system_prompt is not None:
            agent = await self.deploy(name, path, system_prompt=system_prompt, tenant=tenant)
        if env is not None or config is not None:
            merged = None if config is None else {**agent.config, **config}
            updated = await self.store.update_agent(name, env=env, config=merged, tenant=tenant)
            if updated is None:
                raise AgentNotFound(f"agent {name!r} is not deployed", agent=name)
            agent = updated
            self._cache[tenant, name] = (time.monotonic(), agent)
        return agent

    async def patch_config(
        self, name: str, patch: dict[str, Any], tenant: str = DEFAULT_TENANT
    ) -> dict[str, Any]:
        """Shallow-merge ``patch`` into the agent's config; the new config."""
        return (await self.patch(name, config=patch, tenant=tenant)).config

    # ------------------------------------------------------------------ archives for workers

    async def ref(
        self, name: str, version: int | None = None, tenant: str = DEFAULT_TENANT
    ) -> AgentRef:
        """Which archive a session of ``name`` runs (its recorded version, else the latest)."""
        agent = await self.get(name, tenant)
        wanted = version or agent.version
        sha = await self.store.agent_archive_sha(tenant_name(tenant, name), wanted)
        if sha is None and wanted == agent.version:
            sha = await self._import_legacy(agent)
        if sha is None:
            raise NotFound(
                f"agent {name!r} has no stored version {wanted} (latest is {agent.version})",
                agent=name,
            )
        return AgentRef(name=name, version=wanted, sha256=sha, env=agent.env, tenant=tenant)

    async def archive(self, name: str, version: int, tenant: str = DEFAULT_TENANT) -> bytes:
        """The archive of one agent version (what a worker unpacks)."""
        return await self._archive_of(await self.get(name, tenant), version)

    async def _archive_of(self, agent: AgentRecord, version: int) -> bytes:
        key = tenant_name(agent.tenant_id, agent.name)
        data = await self.store.get_agent_archive(key, version)
        if data is None and version == agent.version and await self._import_legacy(agent):
            data = await self.store.get_agent_archive(key, version)
        if data is None:
            raise InvalidInput(
                f"agent {agent.name!r} has no version {version} (latest is {agent.version})",
                agent=agent.name,
            )
        return data

    async def _import_legacy(self, agent: AgentRecord) -> str | None:
        """Archive an agent deployed before archives existed, from its folder, once."""
        folder = Path(agent.path)
        if not agent.path or not (folder / "CLAUDE.md").is_file():
            return None
        content = await asyncio.to_thread(_read_agent_folder, folder, self.limits)
        archive = await asyncio.to_thread(bundle.pack, content)
        logger.info("archiving agent %s v%d from %s", agent.name, agent.version, folder)
        return await self.store.put_agent_archive(
            tenant_name(agent.tenant_id, agent.name), agent.version, archive
        )


def _iso(ts: float) -> str:
    return iso(datetime.fromtimestamp(ts, UTC))


def _read_agent_folder(folder: Path, limits: Limits) -> Files:
    try:
        return bundle.read_folder(folder, limits)
    except OSError as exc:
        raise AgentInvalid(f"cannot read agent folder {folder}: {exc}", path=str(folder)) from None


def _load_archive(archive: bytes) -> AgentSpec:
    """The agent an archive holds, unpacked into a temporary folder to be read."""
    with tempfile.TemporaryDirectory(prefix="ash-agent-check-") as tmp:
        bundle.extract(archive, Path(tmp))
        return load_agent(Path(tmp))


def _checked_archive(content: Files) -> bytes:
    """The archive of ``content``, after checking it loads as an agent (settings, skills)."""
    archive = bundle.pack(content)
    _load_archive(archive)
    return archive
