"""What routes take besides their body: the replica's context, ids, auth, error docs."""

from __future__ import annotations

import hmac
from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ash_ray.api.context import IngressContext
from ash_ray.api.schemas import ErrorOut
from ash_ray.errors import Unauthorized
from ash_ray.models import AGENT_NAME_RE


def _context(request: Request) -> IngressContext:
    ctx: IngressContext = request.app.state.ctx
    return ctx


Ctx = Annotated[IngressContext, Depends(_context)]


def _session_id(
    session_id: Annotated[UUID, Path(description="Session id (a UUID; anything else is a 400).")],
) -> str:
    return str(session_id)


# The canonical text form of the {session_id} path parameter.
SessionId = Annotated[str, Depends(_session_id)]

AgentName = Annotated[
    str,
    Path(pattern=AGENT_NAME_RE.pattern, max_length=128, description="Agent name"),
]

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <ASH_API_KEY>")


async def require_key(
    ctx: Ctx,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Bearer-key auth on /api/* with a constant-time compare (none when no key is set)."""
    key = ctx.settings.api_key
    if not key:  # no key configured (or an empty one): local dev, no auth
        return
    token = credentials.credentials.strip() if credentials else ""
    if not token:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <ASH_API_KEY>'")
    if not hmac.compare_digest(token.encode(), key.get_secret_value().encode()):
        raise Unauthorized("invalid API key")


REASONS = {
    400: "The request is malformed: a bad id, body field or query parameter (named).",
    401: "Missing or wrong API key.",
    404: "No such agent or session.",
    409: "The session is busy (a turn runs) or changing state in another call.",
    410: "The session has ended; it cannot be resumed.",
    413: "The request body is over the configured limit (ASH_MAX_BODY_BYTES).",
    503: "At capacity, draining, or a cluster component is restarting: retry.",
}


def fails(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error codes a route answers, all ``{error, statusCode}``."""
    return {code: {"model": ErrorOut, "description": REASONS[code]} for code in codes}
