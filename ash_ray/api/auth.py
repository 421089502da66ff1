"""Who is calling: the Bearer key resolved to a tenant, and what that tenant may see.

Resolution, in order (constant-time compare for ``ASH_API_KEY``; stored keys are looked
up by their HMAC, so no stored value is ever compared to the token):

1. ``ASH_API_KEY`` -> tenant ``default``, as admin (may mint keys for any tenant).
2. A stored key (``POST /api/api-keys``) -> its tenant.
3. Any other key -> 401.
4. No key -> 401 when ``ASH_API_KEY`` is set; otherwise auth is off (local development,
   warned at start) and the caller is tenant ``default``. Stored keys still resolve to
   their tenants then, so tenant keys behave the same with or without ``ASH_API_KEY``,
   but only ``ASH_API_KEY`` can mint keys for other tenants.

A replica keeps what it resolved for ``KEY_CACHE_S``: a key revoked through another
replica stops working within that time (at once on the replica that revoked it).
Sessions never change tenant, so a session's owner is remembered for good.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

from ash_ray.config import Settings
from ash_ray.crypto import KeyHasher
from ash_ray.errors import SessionNotFound, Unauthorized
from ash_ray.handles import RegistryClient
from ash_ray.models import DEFAULT_TENANT
from ash_ray.tenants import ApiKeyRecord

logger = logging.getLogger(__name__)

KEY_CACHE_S = 5.0
OWNERS_MAX = 100_000


@dataclass(frozen=True)
class Principal:
    """The caller: its tenant, the stored key it used (None: ASH_API_KEY or no auth)."""

    tenant: str
    key_id: str | None = None
    admin: bool = False


class Gatekeeper:
    """Resolves keys to principals and checks that sessions belong to them (per replica)."""

    def __init__(self, settings: Settings, registry: RegistryClient) -> None:
        self.settings = settings
        self.registry = registry
        secret = settings.credential_key
        self.hasher = KeyHasher(secret.get_secret_value() if secret else None)
        if not self.hasher.keyed:
            logger.warning(
                "ASH_CREDENTIAL_KEY is not set: API keys are stored as plain SHA-256 "
                "(HMAC-SHA256 with it) and credentials cannot be stored"
            )
        self._keys: dict[str, tuple[float, ApiKeyRecord]] = {}
        self._owners: OrderedDict[str, str] = OrderedDict()

    async def resolve(self, token: str) -> Principal:
        env = self.settings.api_key
        if token:
            if env is not None and hmac.compare_digest(
                token.encode(), env.get_secret_value().encode()
            ):
                return Principal(DEFAULT_TENANT, admin=True)
            found = await self._stored(token)
            if found is None:
                raise Unauthorized("invalid API key")
            return Principal(found.tenant_id, key_id=found.id)
        if env is not None:
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        return Principal(DEFAULT_TENANT)

    async def _stored(self, token: str) -> ApiKeyRecord | None:
        digest = self.hasher.hash(token)
        cached = self._keys.get(digest)
        if cached is not None and time.monotonic() - cached[0] < KEY_CACHE_S:
            return cached[1]
        found = await self.registry.find_api_key(digest)
        if found is None:
            self._keys.pop(digest, None)
        else:
            self._keys[digest] = (time.monotonic(), found)
        return found

    def forget_key(self, key_id: str) -> None:
        """Drop a revoked key from this replica's cache."""
        for digest, (_, rec) in list(self._keys.items()):
            if rec.id == key_id:
                del self._keys[digest]

    def remember_owner(self, session_id: str, tenant: str) -> None:
        self._owners[session_id] = tenant
        if len(self._owners) > OWNERS_MAX:
            self._owners.popitem(last=False)

    async def check_owner(self, session_id: str, caller: Principal) -> None:
        """SessionNotFound (404) unless the session is the caller's tenant's."""
        owner = self._owners.get(session_id)
        if owner is None:
            owner = (await self.registry.get_session(session_id)).tenant_id
            self.remember_owner(session_id, owner)
        if owner != caller.tenant:
            raise SessionNotFound(f"session {session_id} not found", session_id=session_id)
