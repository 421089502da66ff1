"""Ash's agent versions: named system prompts with release notes, one of them active.

A session's system prompt is the request's, else the active version's, else the
agent's ``CLAUDE.md`` (see :meth:`AgentVersions.prompt_for`). Versions are addressed by
number (``3``) or by id, as Ash's clients do.
"""

from __future__ import annotations

from typing import Any

from ash_ray.errors import InvalidInput, NotFound
from ash_ray.models import AgentVersionRecord
from ash_ray.registry.agents import Agents


class AgentVersions:
    def __init__(self, agents: Agents) -> None:
        self.agents = agents
        self.store = agents.store

    async def list(self, name: str) -> list[AgentVersionRecord]:
        await self.agents.get(name, fresh=True)
        return await self.store.list_agent_versions(name)

    async def get(self, name: str, ref: str) -> AgentVersionRecord:
        await self.agents.get(name, fresh=True)
        found = await self.store.get_agent_version(name, ref)
        if found is None:
            raise NotFound(f"agent {name!r} has no version {ref!r}", agent=name)
        return found

    async def create(self, name: str, body: dict[str, Any]) -> AgentVersionRecord:
        """A new version; ``cloneFrom`` copies the prompt and knowledge files it lacks."""
        await self.agents.get(name, fresh=True)
        prompt = body.get("system_prompt")
        knowledge = body.get("knowledge_files")
        clone = body.get("clone_from")
        if clone is not None:
            source = await self.store.get_agent_version(name, str(clone))
            if source is None:
                raise InvalidInput(
                    f"cloneFrom: agent {name!r} has no version {clone!r} to clone", agent=name
                )
            prompt = source.system_prompt if prompt is None else prompt
            knowledge = source.knowledge_files if knowledge is None else knowledge
        return await self.store.create_agent_version(
            name, title=body.get("name"), system_prompt=prompt,
            release_notes=body.get("release_notes"), knowledge_files=knowledge,
        )

    async def update(self, name: str, ref: str, fields: dict[str, Any]) -> AgentVersionRecord:
        current = await self.get(name, ref)
        updated = await self.store.update_agent_version(current.id, fields)
        if updated is None:
            raise NotFound(f"agent {name!r} has no version {ref!r}", agent=name)
        return updated

    async def delete(self, name: str, ref: str) -> None:
        current = await self.get(name, ref)
        await self.store.delete_agent_version(current.id)

    async def activate(self, name: str, ref: str) -> int:
        current = await self.get(name, ref)
        await self.store.activate_agent_version(name, current.id)
        return current.version_number

    async def prompt_for(self, name: str) -> str | None:
        """The active version's system prompt, if there is one."""
        active = await self.store.active_agent_version(name)
        return active.system_prompt if active is not None else None
