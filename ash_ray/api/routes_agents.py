"""/api/agents: deploy, list, inspect, patch and delete agents."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path

from ash_ray.api.context import IngressContext
from ash_ray.models import AgentCreate, AgentPatch

NAME = Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", description="Agent name")


def agents_router(ctx: IngressContext) -> APIRouter:
    router = APIRouter(prefix="/api/agents", tags=["agents"])

    @router.post("", status_code=201)
    async def deploy(body: AgentCreate) -> dict[str, Any]:
        """Deploy (or redeploy, bumping version) an agent folder that holds a CLAUDE.md."""
        return {"agent": await ctx.registry.deploy_agent.remote(body.name, body.path)}

    @router.get("")
    async def list_agents() -> dict[str, Any]:
        return {"agents": await ctx.registry.list_agents.remote()}

    @router.get("/{name}")
    async def get_agent(name: str = NAME) -> dict[str, Any]:
        return {"agent": await ctx.registry.get_agent.remote(name)}

    @router.patch("/{name}")
    async def patch_agent(body: AgentPatch, name: str = NAME) -> dict[str, Any]:
        current = await ctx.registry.get_agent.remote(name)
        path = body.path or current["path"]
        return {"agent": await ctx.registry.deploy_agent.remote(name, path)}

    @router.delete("/{name}")
    async def delete_agent(name: str = NAME) -> dict[str, Any]:
        await ctx.registry.delete_agent.remote(name)
        return {"ok": True}

    return router
