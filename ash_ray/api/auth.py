"""Bearer-key auth on /api/* with a constant-time compare."""

from __future__ import annotations

import hmac

from fastapi import Request

from ash_ray.config import Settings
from ash_ray.errors import Unauthorized


def make_auth(settings: Settings):  # type: ignore[no-untyped-def]
    expected = settings.api_key.get_secret_value().encode() if settings.api_key else None

    async def require_key(request: Request) -> None:
        if expected is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("missing API key: send 'Authorization: Bearer <ASH_API_KEY>'")
        if not hmac.compare_digest(token.strip().encode(), expected):
            raise Unauthorized("invalid API key")

    return require_key
