"""What routes take besides their body: the replica's context, the caller, ids, error docs.

Every /api/* route depends on :func:`require_key`, which resolves the Bearer key to a
:class:`Principal` (the tenant); routes take it as ``Caller`` and pass ``caller.tenant``
down. ``SessionId`` checks that the session is the caller's tenant's (else 404), so no
session route can reach another tenant's session.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ash_ray.api.auth import Gatekeeper, Principal
from ash_ray.api.context import IngressContext
from ash_ray.api.schemas import ErrorOut
from ash_ray.errors import Forbidden
from ash_ray.models import AGENT_NAME_RE


async def _context(request: Request) -> IngressContext:
    ctx: IngressContext = request.app.state.ctx
    return ctx


Ctx = Annotated[IngressContext, Depends(_context)]


async def _gatekeeper(request: Request) -> Gatekeeper:
    gate: Gatekeeper = request.app.state.gate
    return gate


Gate = Annotated[Gatekeeper, Depends(_gatekeeper)]

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")


async def require_key(
    gate: Gate,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller of an /api/* route (see :mod:`ash_ray.api.auth`); 401 for a bad key."""
    token = credentials.credentials.strip() if credentials else ""
    return await gate.resolve(token)


# The caller; FastAPI resolves it once per request however many dependencies ask.
Caller = Annotated[Principal, Depends(require_key)]


async def require_admin(caller: Caller, ctx: Ctx) -> Principal:
    """Only ASH_API_KEY itself may act on other tenants."""
    if not caller.admin:
        raise Forbidden(
            "only ASH_API_KEY may manage other tenants' keys"
            if ctx.settings.auth_enabled
            else "set ASH_API_KEY on the server: it is the admin key that mints tenants' keys"
        )
    return caller


Admin = Annotated[Principal, Depends(require_admin)]


async def _session_id(
    session_id: Annotated[UUID, Path(description="Session id (a UUID; anything else is a 400).")],
    caller: Caller,
    gate: Gate,
) -> str:
    sid = str(session_id)
    await gate.check_owner(sid, caller)  # another tenant's session is a 404
    return sid


# The canonical text form of the {session_id} path parameter, of the caller's tenant.
SessionId = Annotated[str, Depends(_session_id)]

AgentName = Annotated[
    str,
    Path(pattern=AGENT_NAME_RE.pattern, max_length=128, description="Agent name"),
]


REASONS = {
    400: "The request is malformed: a bad id, body field or query parameter (named).",
    401: "Missing or wrong API key.",
    403: "The key is valid but may not do this (admin routes take ASH_API_KEY).",
    404: "No such agent, session, file, key, credential, queue item or eval record of the "
         "caller's tenant.",
    409: "The session is busy (a turn runs) or changing state in another call.",
    410: "The session has ended; it cannot be resumed.",
    500: "The server is not set up for this (named setting), or an internal failure.",
    413: "The request body is over the configured limit (ASH_MAX_BODY_BYTES).",
    503: "At capacity, draining, or a cluster component is restarting: retry.",
}


def fails(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error codes a route answers, all ``{error, statusCode}``."""
    return {code: {"model": ErrorOut, "description": REASONS[code]} for code in codes}
