"""/api/credentials: model keys stored sealed (AES-256-GCM), never answered back.

The ingress seals a key as it arrives; only the worker of a session created with its
``credentialId`` opens it (:mod:`ash_ray.session.model_client`).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Response

from ash_ray.api.deps import Caller, Ctx, fails
from ash_ray.api.schemas import CredentialList, CredentialReply
from ash_ray.crypto import seal
from ash_ray.errors import CredentialNotFound
from ash_ray.models import new_id, utcnow
from ash_ray.tenants import CredentialCreate, CredentialRecord

router = APIRouter(prefix="/api/credentials", tags=["credentials"])


@router.post("", status_code=201, response_model=CredentialReply, responses=fails(400, 500))
async def add(body: CredentialCreate, ctx: Ctx, caller: Caller) -> dict[str, Any]:
    """Store a credential of the caller's tenant (500 when ASH_CREDENTIAL_KEY is unset)."""
    secret = ctx.settings.credential_key
    cid = new_id()
    sealed = seal(
        secret.get_secret_value() if secret else None, body.key,
        tenant=caller.tenant, credential_id=cid,
    )  # fmt: skip
    rec = CredentialRecord(
        id=cid, tenant_id=caller.tenant, type=body.type, label=body.label,
        base_url=body.base_url, ciphertext=sealed.ciphertext, nonce=sealed.nonce,
        salt=sealed.salt, created_at=utcnow(),
    )  # fmt: skip
    await ctx.registry.add_credential(rec)
    return {"credential": rec.public()}


@router.get("", response_model=CredentialList)
async def list_credentials(ctx: Ctx, caller: Caller) -> dict[str, Any]:
    """The caller's tenant's credentials (never their keys)."""
    found = await ctx.registry.list_credentials(caller.tenant)
    return {"credentials": [c.public() for c in found]}


@router.delete("/{credential_id}", status_code=204, responses=fails(400, 404))
async def delete(credential_id: UUID, ctx: Ctx, caller: Caller) -> Response:
    """Delete a credential; sessions that name it can no longer resume cold."""
    if not await ctx.registry.delete_credential(str(credential_id), caller.tenant):
        raise CredentialNotFound(f"credential {credential_id} not found")
    return Response(status_code=204)
