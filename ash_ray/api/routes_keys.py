"""/api/api-keys: a tenant's own keys; /api/admin/api-keys: any tenant's (ASH_API_KEY only).

A key is ``ash_`` + 192 random bits, answered once at creation; the Store keeps its
HMAC (:mod:`ash_ray.crypto`). ``ASH_API_KEY`` itself is listed as the ``env`` entry of
tenant ``default`` and cannot be revoked here.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Response

from ash_ray.api.deps import Admin, Caller, Ctx, Gate, fails
from ash_ray.api.schemas import ApiKeyCreated, ApiKeyOut
from ash_ray.crypto import new_api_key
from ash_ray.errors import NotFound
from ash_ray.models import TENANT_RE, new_id, utcnow
from ash_ray.tenants import AdminApiKeyCreate, ApiKeyCreate, ApiKeyRecord

router = APIRouter(prefix="/api", tags=["api-keys"])

ENV_KEY = {"id": "env", "label": "ASH_API_KEY (environment variable)", "keyPrefix": "••••••••"}
TenantQuery = Annotated[str, Query(pattern=TENANT_RE.pattern, description="Tenant name.")]


async def _mint(ctx: Ctx, gate: Gate, tenant: str, label: str | None) -> dict[str, Any]:
    key = new_api_key()
    rec = ApiKeyRecord(
        id=new_id(), tenant_id=tenant, label=label, key_hash=gate.hasher.hash(key),
        key_prefix=key[:8], created_at=utcnow(),
    )  # fmt: skip
    await ctx.registry.add_api_key(rec)
    return {"id": rec.id, "key": key, "tenantId": tenant, "label": label}


async def _listed(ctx: Ctx, tenant: str) -> list[dict[str, Any]]:
    keys = [k.public() for k in await ctx.registry.list_api_keys(tenant)]
    if tenant == "default" and ctx.settings.auth_enabled:
        keys.insert(0, ENV_KEY)
    return keys


async def _revoke(ctx: Ctx, gate: Gate, key_id: UUID, tenant: str) -> Response:
    if not await ctx.registry.delete_api_key(str(key_id), tenant):
        raise NotFound(f"API key {key_id} not found")
    gate.forget_key(str(key_id))
    return Response(status_code=204)


@router.get("/api-keys", response_model=list[ApiKeyOut])
async def list_keys(ctx: Ctx, caller: Caller) -> list[dict[str, Any]]:
    """The caller's tenant's keys (prefixes only), ``ASH_API_KEY`` as ``env``."""
    return await _listed(ctx, caller.tenant)


@router.post("/api-keys", status_code=201, response_model=ApiKeyCreated, responses=fails(400))
async def create_key(
    body: ApiKeyCreate, ctx: Ctx, caller: Caller, gate: Gate
) -> dict[str, Any]:
    """A new key of the caller's tenant; ``key`` is shown this once."""
    return await _mint(ctx, gate, caller.tenant, body.label)


@router.delete("/api-keys/{key_id}", status_code=204, responses=fails(400, 404))
async def revoke_key(key_id: UUID, ctx: Ctx, caller: Caller, gate: Gate) -> Response:
    """Revoke one of the caller's tenant's keys (another tenant's is a 404)."""
    return await _revoke(ctx, gate, key_id, caller.tenant)


@router.get("/admin/api-keys", response_model=list[ApiKeyOut], responses=fails(400, 403))
async def admin_list_keys(tenant: TenantQuery, ctx: Ctx, _: Admin) -> list[dict[str, Any]]:
    """Any tenant's keys (ASH_API_KEY only)."""
    return await _listed(ctx, tenant)


@router.post(
    "/admin/api-keys", status_code=201, response_model=ApiKeyCreated, responses=fails(400, 403)
)
async def admin_create_key(
    body: AdminApiKeyCreate, ctx: Ctx, gate: Gate, _: Admin
) -> dict[str, Any]:
    """A key of any tenant (ASH_API_KEY only): how a tenant comes to exist."""
    return await _mint(ctx, gate, body.tenant, body.label)


@router.delete("/admin/api-keys/{key_id}", status_code=204, responses=fails(400, 403, 404))
async def admin_revoke_key(
    key_id: UUID, tenant: TenantQuery, ctx: Ctx, gate: Gate, _: Admin
) -> Response:
    """Revoke any tenant's key (ASH_API_KEY only)."""
    return await _revoke(ctx, gate, key_id, tenant)
