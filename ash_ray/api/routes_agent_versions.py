"""/api/agents/{name}/versions: Ash's agent versions (named prompts, one active).

``{version}`` is the version number or the version id, as Ash's clients send either.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Response
from fastapi import Path as PathParam

from ash_ray.api.deps import AgentName, Caller, Ctx, fails
from ash_ray.api.schemas_agents import (
    AgentVersionActivated,
    AgentVersionList,
    AgentVersionReply,
)
from ash_ray.models import AgentVersionCreate, AgentVersionPatch

router = APIRouter(prefix="/api/agents/{name}/versions", tags=["agents"])

VersionRef = Annotated[str, PathParam(min_length=1, max_length=64, description="Number or id")]


def _fields(body: AgentVersionPatch) -> dict[str, Any]:
    return body.model_dump(exclude_unset=True)


@router.get("", response_model=AgentVersionList, responses=fails(400, 404))
async def list_versions(name: AgentName, ctx: Ctx, caller: Caller) -> dict[str, Any]:
    """Every version of the agent, by number."""
    versions = await ctx.registry.agent_op("versions.list", name, tenant=caller.tenant)
    return {"versions": [v.public() for v in versions]}


@router.post(
    "", status_code=201, response_model=AgentVersionReply, responses=fails(400, 404)
)
async def create_version(
    name: AgentName, ctx: Ctx, caller: Caller, body: AgentVersionCreate | None = None
) -> dict[str, Any]:
    """A new version (default name ``v<N>``); ``cloneFrom`` copies prompt and files."""
    fields = _fields(body) if body is not None else {}
    version = await ctx.registry.agent_op("versions.create", name, fields, tenant=caller.tenant)
    return {"version": version.public()}


@router.get("/{version}", response_model=AgentVersionReply, responses=fails(400, 404))
async def get_version(
    name: AgentName, version: VersionRef, ctx: Ctx, caller: Caller
) -> dict[str, Any]:
    """One version."""
    got = await ctx.registry.agent_op("versions.get", name, version, tenant=caller.tenant)
    return {"version": got.public()}


@router.patch("/{version}", response_model=AgentVersionReply, responses=fails(400, 404))
async def patch_version(
    name: AgentName, version: VersionRef, body: AgentVersionPatch, ctx: Ctx, caller: Caller
) -> dict[str, Any]:
    """Change name, systemPrompt, releaseNotes or knowledgeFiles."""
    got = await ctx.registry.agent_op(
        "versions.update", name, version, _fields(body), tenant=caller.tenant
    )
    return {"version": got.public()}


@router.delete("/{version}", status_code=204, response_class=Response, responses=fails(400, 404))
async def delete_version(
    name: AgentName, version: VersionRef, ctx: Ctx, caller: Caller
) -> Response:
    """Remove a version."""
    await ctx.registry.agent_op("versions.delete", name, version, tenant=caller.tenant)
    return Response(status_code=204)


@router.post(
    "/{version}/activate", response_model=AgentVersionActivated, responses=fails(400, 404)
)
async def activate_version(
    name: AgentName, version: VersionRef, ctx: Ctx, caller: Caller
) -> dict[str, Any]:
    """Make this the active version: new sessions take its system prompt."""
    number = await ctx.registry.agent_op(
        "versions.activate", name, version, tenant=caller.tenant
    )
    return {"activated": True, "versionNumber": number}
