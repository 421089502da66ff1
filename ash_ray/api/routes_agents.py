"""/api/agents: deploy, list, inspect, patch and delete agents; their config and files.

An agent is data in the Store (see :mod:`ash_ray.registry.agents`): a deploy from a
server folder or from uploaded files, and every change of its files, is a new version.
"""

from __future__ import annotations

import base64
import mimetypes
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Body, Query, Response
from fastapi import Path as PathParam

from ash_ray.api.deps import AgentName, Caller, Ctx, fails
from ash_ray.api.schemas import AgentList, AgentReply, OkReply
from ash_ray.api.schemas_agents import (
    AgentConfigReply,
    AgentFileContent,
    AgentFileDeleted,
    AgentFileList,
    AgentFilesWritten,
)
from ash_ray.errors import InvalidInput
from ash_ray.models import AgentCreate, AgentFilesUpload, AgentPatch

router = APIRouter(prefix="/api/agents", tags=["agents"])

# ?format=json answers at most this much content (Ash: 1 MiB); raw has no such limit.
JSON_FILE_MAX = 1024 * 1024

FilePath = Annotated[str, PathParam(max_length=4096, description="Path inside the agent")]


def _files(items: list[Any] | None) -> list[tuple[str, str]] | None:
    return None if items is None else [(f.path, f.content) for f in items]


@router.post("", status_code=201, response_model=AgentReply, responses=fails(400, 413))
async def deploy(body: AgentCreate, ctx: Ctx, caller: Caller) -> dict[str, Any]:
    """Deploy (or redeploy, bumping version) from a server folder or uploaded files."""
    agent = await ctx.registry.agent_op(
        "agents.deploy", body.name, body.path, files=_files(body.files),
        system_prompt=body.system_prompt, env=body.env, replace_files=body.replace_files,
        tenant=caller.tenant,
    )
    return {"agent": agent.public()}


@router.get("", response_model=AgentList)
async def list_agents(ctx: Ctx, caller: Caller) -> dict[str, Any]:
    """The caller's tenant's agents, by name."""
    return {"agents": [a.public() for a in await ctx.registry.list_agents(caller.tenant)]}


@router.get("/{name}", response_model=AgentReply, responses=fails(400, 404))
async def get_agent(name: AgentName, ctx: Ctx, caller: Caller) -> dict[str, Any]:
    """One agent: its current version and env names (values redacted)."""
    return {"agent": (await ctx.registry.get_agent(name, caller.tenant)).public()}


@router.patch("/{name}", response_model=AgentReply, responses=fails(400, 404, 413))
async def patch_agent(
    name: AgentName, body: AgentPatch, ctx: Ctx, caller: Caller
) -> dict[str, Any]:
    """Set env (replaced) or config (shallow merge); a new ``path`` or ``systemPrompt``
    makes a new version."""
    agent = await ctx.registry.agent_op(
        "agents.patch", name, env=body.env, config=body.config, path=body.path,
        system_prompt=body.system_prompt, tenant=caller.tenant,
    )
    return {"agent": agent.public()}


@router.delete("/{name}", response_model=OkReply, responses=fails(400, 404))
async def delete_agent(name: AgentName, ctx: Ctx, caller: Caller) -> dict[str, Any]:
    """Forget an agent and its stored versions; its live sessions keep running."""
    await ctx.registry.delete_agent(name, caller.tenant)
    return {"ok": True}


# ---------------------------------------------------------------- config


@router.get("/{name}/config", response_model=AgentConfigReply, responses=fails(400, 404))
async def get_config(name: AgentName, ctx: Ctx, caller: Caller) -> dict[str, Any]:
    """The agent's config object."""
    return {"config": (await ctx.registry.get_agent(name, caller.tenant)).config}


@router.patch(
    "/{name}/config", response_model=AgentConfigReply, responses=fails(400, 404)
)
async def patch_config(
    name: AgentName, ctx: Ctx, caller: Caller, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    """Shallow-merge the body into the agent's config."""
    return {
        "config": await ctx.registry.agent_op(
            "agents.patch_config", name, body, tenant=caller.tenant
        )
    }


# ---------------------------------------------------------------- files


@router.get("/{name}/files", response_model=AgentFileList, responses=fails(400, 404))
async def list_files(name: AgentName, ctx: Ctx, caller: Caller) -> dict[str, Any]:
    """The files of the agent's current version: ``{path, size, modifiedAt}``."""
    return {
        "files": await ctx.registry.agent_op("agents.list_files", name, tenant=caller.tenant)
    }


@router.get(
    "/{name}/files/{path:path}", response_model=AgentFileContent,
    response_model_exclude_none=True, responses=fails(400, 404),
)
async def get_file(
    name: AgentName,
    path: FilePath,
    ctx: Ctx,
    caller: Caller,
    format: Annotated[str, Query(pattern="^(json|raw)$")] = "json",
) -> Any:
    """One file: JSON ``{path, content, size}`` (up to 1 MiB) or the raw bytes."""
    data: bytes = await ctx.registry.agent_op(
        "agents.read_file", name, path, tenant=caller.tenant
    )
    if format == "raw":
        return raw_file(path, data)
    if len(data) > JSON_FILE_MAX:
        raise InvalidInput(
            f"{path} is {len(data)} bytes, over the {JSON_FILE_MAX}-byte limit of "
            "?format=json; use ?format=raw"
        )
    try:
        return {"path": path, "content": data.decode("utf-8"), "size": len(data)}
    except UnicodeDecodeError:
        content = base64.b64encode(data).decode()
        return {"path": path, "content": content, "size": len(data), "encoding": "base64"}


def raw_file(path: str, data: bytes) -> Response:
    """The bytes as a download: RFC 5987 file name, guessed type, never sniffed."""
    filename = path.rsplit("/", 1)[-1]
    media = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    fallback = filename.encode("ascii", "replace").decode().replace('"', "_")
    return Response(
        data,
        media_type=media,
        headers={
            "Content-Disposition": (
                f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename)}"
            ),
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.post(
    "/{name}/files", response_model=AgentFilesWritten, responses=fails(400, 404, 413)
)
async def upload_files(
    name: AgentName, body: AgentFilesUpload, ctx: Ctx, caller: Caller
) -> dict[str, Any]:
    """Write base64 files into the agent (a new version)."""
    agent = await ctx.registry.agent_op(
        "agents.upload_files", name, _files(body.files), tenant=caller.tenant
    )
    return {"written": len(body.files), "version": agent.version}


@router.delete(
    "/{name}/files/{path:path}", response_model=AgentFileDeleted, responses=fails(400, 404)
)
async def delete_file(
    name: AgentName, path: FilePath, ctx: Ctx, caller: Caller
) -> dict[str, Any]:
    """Remove one file from the agent (a new version)."""
    agent = await ctx.registry.agent_op(
        "agents.delete_file", name, path, tenant=caller.tenant
    )
    return {"deleted": True, "version": agent.version}
