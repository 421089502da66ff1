"""The FastAPI application of an ingress replica: health, metrics, /api routes."""

from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ash_ray import __version__
from ash_ray.api import errors
from ash_ray.api.auth import make_auth
from ash_ray.api.context import IngressContext
from ash_ray.api.routes_agents import agents_router
from ash_ray.api.routes_sessions import sessions_router
from ash_ray.console import console_router
from ash_ray.sandbox import detect_limit_mode


class BodyLimit:
    """413 for bodies over the limit, decided from Content-Length before reading.

    Pure ASGI (not BaseHTTPMiddleware), so that SSE chunks pass through untouched.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope.get("headers", ()):
                if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                    response = errors.error_response(
                        413,
                        f"request body of {int(value)} bytes is over the "
                        f"{self.max_bytes}-byte limit",
                    )
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def create_api(ctx: IngressContext) -> FastAPI:
    settings = ctx.settings
    app = FastAPI(
        title="ash-ray",
        version=__version__,
        description="Claude agents as HTTP APIs on Ray (wire-compatible with Ash).",
    )
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    limit_mode = detect_limit_mode(settings)

    @app.get("/health", tags=["health"])
    async def health() -> JSONResponse:
        """Liveness and pool figures (public)."""
        reg = await ctx.registry.health.remote()
        body = {
            "status": "ok",
            "version": __version__,
            "activeSessions": reg["activeSessions"],
            "activeSandboxes": reg["activeSandboxes"],
            "uptime": round(ctx.uptime_s(), 3),
            "pool": reg["pool"],
            "poolReady": reg["poolReady"],
            "store": reg["store"],
            "sandboxLimits": limit_mode,
            "auth": settings.auth_enabled,
            "accepting": reg["accepting"],
        }
        return JSONResponse(body, status_code=200 if reg["accepting"] else 503)

    @app.get("/metrics", tags=["health"])
    async def metrics() -> Response:
        """Prometheus text; cluster-wide figures from the registry (public)."""
        text = await ctx.registry.metrics_text.remote()
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    auth = [Depends(make_auth(settings))]
    app.include_router(agents_router(ctx), dependencies=auth)
    app.include_router(sessions_router(ctx), dependencies=auth)
    app.include_router(console_router())  # public pages; their data needs the key
    return app
