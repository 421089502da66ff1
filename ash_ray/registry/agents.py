"""Deployed agents: the store's rows behind a short cache (agents change rarely)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from ash_ray.agent import load_agent
from ash_ray.errors import AgentInvalid, AgentNotFound
from ash_ray.models import DEFAULT_TENANT, AgentRecord
from ash_ray.store.base import Store

# Agents change only through a registry; another cluster's registry on the same database
# (a blue/green upgrade) is seen within this many seconds.
AGENT_CACHE_S = 5.0


class Agents:
    """Agents by (tenant, name): two tenants' agents of one name never meet."""

    def __init__(self, store: Store, cache_s: float = AGENT_CACHE_S) -> None:
        self.store = store
        self.cache_s = cache_s
        self._cache: dict[tuple[str, str], tuple[float, AgentRecord]] = {}

    async def deploy(self, name: str, path: str, tenant: str = DEFAULT_TENANT) -> AgentRecord:
        folder = await asyncio.to_thread(check_agent_folder, path)
        agent = await self.store.upsert_agent(name, folder, tenant)
        self._cache[tenant, name] = (time.monotonic(), agent)
        return agent

    async def get(self, name: str, tenant: str = DEFAULT_TENANT) -> AgentRecord:
        cached = self._cache.get((tenant, name))
        if cached is not None and time.monotonic() - cached[0] < self.cache_s:
            return cached[1]
        agent = await self.store.get_agent(name, tenant)
        if agent is None:
            self._cache.pop((tenant, name), None)
            raise AgentNotFound(f"agent {name!r} is not deployed", agent=name)
        self._cache[tenant, name] = (time.monotonic(), agent)
        return agent

    async def list(self, tenant: str = DEFAULT_TENANT) -> list[AgentRecord]:
        return await self.store.list_agents(tenant)

    async def delete(self, name: str, tenant: str = DEFAULT_TENANT) -> AgentRecord:
        agent = await self.get(name, tenant)
        self._cache.pop((tenant, name), None)
        await self.store.delete_agent(name, tenant)
        return agent


def check_agent_folder(path: str) -> str:
    """The agent folder as an absolute path; AgentInvalid when it cannot serve as one."""
    folder = Path(path).expanduser()
    if not folder.is_absolute():
        raise AgentInvalid(f"agent path must be absolute, got {path!r}", path=path)
    if not (folder / "CLAUDE.md").is_file():
        raise AgentInvalid(
            f"{folder} has no CLAUDE.md; an agent folder needs one (its system prompt)",
            path=path,
        )
    load_agent(folder)  # settings.json and skills must parse, too
    return str(folder)
