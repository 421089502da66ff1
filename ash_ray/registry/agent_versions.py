"""Ash's agent versions: named system prompts with release notes, one of them active.

A session's system prompt is the request's, else the active version's, else the
agent's ``CLAUDE.md`` (see :meth:`AgentVersions.prompt_for`). Versions are addressed by
number (``3``) or by id, as Ash's clients do.
"""

from __future__ import annotations

from typing import Any

from ash_ray.errors import InvalidInput, NotFound
from ash_ray.models import DEFAULT_TENANT, AgentVersionRecord
from ash_ray.registry.agents import Agents
from ash_ray.store._rows import tenant_name


class AgentVersions:
    """Versions of the tenant's agent; the store keys them by ``<tenant>/<name>``."""

    def __init__(self, agents: Agents) -> None:
        self.agents = agents
        self.store = agents.store

    async def list(self, name: str, tenant: str = DEFAULT_TENANT) -> list[AgentVersionRecord]:
        await self.agents.get(name, tenant, fresh=True)
        return await self.store.list_agent_versions(tenant_name(tenant, name))

    async def get(
        self, name: str, ref: str, tenant: str = DEFAULT_TENANT
    ) -> AgentVersionRecord:
        await self.agents.get(name, tenant, fresh=True)
        found = await self.store.get_agent_version(tenant_name(tenant, name), ref)
        if found is None:
            raise NotFound(f"agent {name!r} has no version {ref!r}", agent=name)
        return found

    async def create(
        self, name: str, body: dict[str, Any], tenant: str = DEFAULT_TENANT
    ) -> AgentVersionRecord:
        """A new version; ``cloneFrom`` copies the prompt and knowledge files it lacks."""
        await self.agents.get(name, tenant, fresh=True)
        key = tenant_name(tenant, name)
        prompt = body.get("system_prompt")
        knowledge = body.get("knowledge_files")
        clone = body.get("clone_from")
        if clone is not None:
            source = await self.store.get_agent_version(key, str(clone))
            if source is None:
                raise InvalidInput(
                    f"cloneFrom: agent {name!r} has no version {clone!r} to clone", agent=name
                )
            prompt = source.system_prompt if prompt is None else prompt
            knowledge = source.knowledge_files if knowledge is None else knowledge
        return await self.store.create_agent_version(
            key, title=body.get("name"), system_prompt=prompt,
            release_notes=body.get("release_notes"), knowledge_files=knowledge,
        )

    async def update(
        self, name: str, ref: str, fields: dict[str, Any], tenant: str = DEFAULT_TENANT
    ) -> AgentVersionRecord:
        current = await self.get(name, ref, tenant)
        updated = await self.store.update_agent_version(current.id, fields)
        if updated is None:
            raise NotFound(f"agent {name!r} has no version {ref!r}", agent=name)
        return updated

    async def delete(self, name: str, ref: str, tenant: str = DEFAULT_TENANT) -> None:
        current = await self.get(name, ref, tenant)
        await self.store.delete_agent_version(current.id)

    async def activate(self, name: str, ref: str, tenant: str = DEFAULT_TENANT) -> int:
        current = await self.get(name, ref, tenant)
        await self.store.activate_agent_version(tenant_name(tenant, name), current.id)
        return current.version_number

    async def prompt_for(self, name: str, tenant: str = DEFAULT_TENANT) -> str | None:
        """The active version's system prompt, if there is one."""
        active = await self.store.active_agent_version(tenant_name(tenant, name))
        return active.system_prompt if active is not None else None
