"""The FastAPI application of an ingress replica: health, metrics, /api routes."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, FastAPI
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ash_ray import __version__
from ash_ray.api import (
    errors,
    openapi,
    routes_agent_versions,
    routes_agents,
    routes_attachments,
    routes_credentials,
    routes_evals,
    routes_exec,
    routes_files,
    routes_health,
    routes_keys,
    routes_messages,
    routes_queue,
    routes_sessions,
    routes_usage,
    routes_workspace,
)
from ash_ray.api.auth import Gatekeeper
from ash_ray.api.context import IngressContext
from ash_ray.api.deps import fails, require_key
from ash_ray.api.lane import TurnLane
from ash_ray.api.uploads import upload_limits
from ash_ray.console import console_router
from ash_ray.sandbox import describe_isolation, detect_limit_mode


class BodyLimit:
    """413 for bodies over the limit: from Content-Length up front, else counted as they stream.

    Pure ASGI (not BaseHTTPMiddleware), so that SSE chunks pass through untouched. A
    chunked body has no Content-Length: its bytes are counted as the app reads them, and
    the read that passes the limit raises a 413 (the route never sees that body).
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, limit_for: Callable[[str, str], int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # Upload routes (files, bundles, attachments) take larger bodies: their own limit.
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        if self.limit_for is not None:
            limit = self.limit_for(scope["method"], scope["path"])
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._refuse(
                    scope, receive, send, f"request body of {int(value)} bytes", limit
                )
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # An HTTPException: FastAPI passes it on (any other error reading a
                    # body becomes its 400) and the error handler answers the 413.
                    raise HTTPException(413, self._message("a streamed request body", limit))
            return message

        await self.app(scope, counting_receive, send)

    def _message(self, what: str, limit: int) -> str:
        return f"{what} is over the {limit}-byte limit"

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, what: str, limit: int
    ) -> None:
        response = errors.error_response(413, self._message(what, limit))
        await response(scope, receive, send)


def create_api(ctx: IngressContext) -> FastAPI:
    app = FastAPI(
        title="ash-ray",
        version=__version__,
        description="Claude agents as HTTP APIs on Ray (wire-compatible with Ash).",
    )
    app.state.ctx = ctx
    app.state.gate = Gatekeeper(ctx.settings, ctx.registry)
    app.state.limit_mode = detect_limit_mode(ctx.settings)
    app.state.isolation = describe_isolation(ctx.settings)
    errors.install(app)
    app.add_middleware(
        BodyLimit, max_bytes=ctx.settings.max_body_bytes,
        limit_for=upload_limits(ctx.settings),
    )
    app.add_middleware(TurnLane, ctx=ctx, gate=app.state.gate)  # outside BodyLimit
    app.include_router(routes_health.router)
    auth = {"dependencies": [Depends(require_key)], "responses": fails(401, 503)}
    for module in (
        routes_agents, routes_agent_versions, routes_sessions, routes_messages, routes_exec,
        routes_files, routes_workspace, routes_attachments, routes_queue, routes_usage,
        routes_evals, routes_keys, routes_credentials,
    ):
        app.include_router(module.router, **auth)  # type: ignore[arg-type]
    # The console's pages are public; the data behind them needs the key.
    app.include_router(console_router())
    openapi.install(app)
    return app
