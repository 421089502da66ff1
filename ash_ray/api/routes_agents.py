"""/api/agents: deploy, list, inspect, patch and delete agents."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ash_ray.api.deps import AgentName, Caller, Ctx, fails
from ash_ray.api.schemas import AgentList, AgentReply, OkReply
from ash_ray.models import AgentCreate, AgentPatch

router = APIRouter(prefix="/api/agents", tags=["agents"])


@router.post("", status_code=201, response_model=AgentReply, responses=fails(400, 413))
async def deploy(body: AgentCreate, ctx: Ctx, caller: Caller) -> dict[str, Any]:
    """Deploy (or redeploy, bumping version) an agent folder that holds a CLAUDE.md."""
    agent = await ctx.registry.deploy_agent(body.name, body.path, caller.tenant)
    return {"agent": agent.public()}


@router.get("", response_model=AgentList)
async def list_agents(ctx: Ctx, caller: Caller) -> dict[str, Any]:
    """The caller's tenant's agents, by name."""
    return {"agents": [a.public() for a in await ctx.registry.list_agents(caller.tenant)]}


@router.get("/{name}", response_model=AgentReply, responses=fails(400, 404))
async def get_agent(name: AgentName, ctx: Ctx, caller: Caller) -> dict[str, Any]:
    """One agent: its folder and current version."""
    return {"agent": (await ctx.registry.get_agent(name, caller.tenant)).public()}


@router.patch("/{name}", response_model=AgentReply, responses=fails(400, 404, 413))
async def patch_agent(
    name: AgentName, body: AgentPatch, ctx: Ctx, caller: Caller
) -> dict[str, Any]:
    """Redeploy an agent, from a new folder when ``path`` is given (bumps the version)."""
    current = await ctx.registry.get_agent(name, caller.tenant)
    path = body.path or current.path
    return {"agent": (await ctx.registry.deploy_agent(name, path, caller.tenant)).public()}


@router.delete("/{name}", response_model=OkReply, responses=fails(400, 404))
async def delete_agent(name: AgentName, ctx: Ctx, caller: Caller) -> dict[str, Any]:
    """Forget an agent; its sessions keep running."""
    await ctx.registry.delete_agent(name, caller.tenant)
    return {"ok": True}
