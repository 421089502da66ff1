"""Tenants' API keys and stored model credentials: wire bodies and store rows.

A tenant is a name (``default`` owns ``ASH_API_KEY``); every agent, session, key and
credential belongs to one. Keys are stored as hashes (:mod:`ash_ray.crypto`), credentials
sealed; neither secret is ever in a row's public form.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints, model_validator

from ash_ray.models import (
    DEFAULT_TENANT,
    NAME_MAX,
    PATH_MAX,
    TENANT_RE,
    CredentialType,
    Wire,
    iso,
)

Label = Annotated[str, StringConstraints(max_length=NAME_MAX)]
Tenant = Annotated[str, StringConstraints(pattern=TENANT_RE.pattern)]
SECRET_MAX = 64 * 1024  # an API key, or Bedrock's JSON of AWS keys


class ApiKeyCreate(Wire):
    """POST /api/api-keys: a key for the caller's own tenant."""

    label: Label | None = None


class AdminApiKeyCreate(Wire):
    """POST /api/admin/api-keys (ASH_API_KEY only): a key for any tenant."""

    tenant: Tenant = Field(description="The tenant the key acts as (letters, digits, . _ -).")
    label: Label | None = None


class CredentialCreate(Wire):
    """POST /api/credentials. ``key`` is sealed at once and never returned."""

    type: CredentialType
    key: str = Field(min_length=1, max_length=SECRET_MAX)
    label: Label | None = None
    base_url: (
        Annotated[str, StringConstraints(max_length=PATH_MAX, pattern=r"^https?://")] | None
    ) = Field(None, description="The Messages API endpoint of a `custom` credential.")

    @model_validator(mode="after")
    def _bedrock_json(self) -> CredentialCreate:
        if self.type == "bedrock":
            bedrock_keys(self.key)  # refused here (400), not at the first model call
        return self


def bedrock_keys(key: str) -> dict[str, str]:
    """Bedrock's key is JSON: ``accessKeyId``, ``secretAccessKey``, ``region`` (+ token)."""
    try:
        value = json.loads(key)
    except ValueError:
        value = None
    needed = ("accessKeyId", "secretAccessKey", "region")
    if not isinstance(value, dict) or not all(isinstance(value.get(k), str) for k in needed):
        raise ValueError(
            "a bedrock key is JSON with accessKeyId, secretAccessKey, region "
            "(and optionally sessionToken)"
        )
    return {k: v for k, v in value.items() if isinstance(v, str)}


class ApiKeyRecord(BaseModel):
    id: str
    tenant_id: str = DEFAULT_TENANT
    label: str | None = None
    key_hash: str
    key_prefix: str
    created_at: datetime

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenantId": self.tenant_id,
            "label": self.label,
            "keyPrefix": self.key_prefix + "••••",
            "createdAt": iso(self.created_at),
        }


class CredentialRecord(BaseModel):
    """A stored credential; ``ciphertext``/``nonce``/``salt`` are its sealed key."""

    id: str
    tenant_id: str = DEFAULT_TENANT
    type: CredentialType
    label: str | None = None
    base_url: str | None = None
    ciphertext: bytes
    nonce: bytes
    salt: bytes
    created_at: datetime
    last_used_at: datetime | None = None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "label": self.label,
            "active": True,
            "baseUrl": self.base_url,
            "createdAt": iso(self.created_at),
            "lastUsedAt": iso(self.last_used_at) if self.last_used_at else None,
        }
