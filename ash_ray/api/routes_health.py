"""/health and /metrics: public, for probes and Prometheus."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from ash_ray import __version__
from ash_ray.api.deps import Ctx
from ash_ray.api.schemas import HealthOut

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "Draining: not accepting sessions."}},
)
async def health(ctx: Ctx, request: Request) -> Any:
    """Liveness and pool figures (public)."""
    reg = await ctx.registry.health()
    body = {
        "status": "ok",
        "version": __version__,
        "activeSessions": reg["activeSessions"],
        "activeSandboxes": reg["activeSandboxes"],
        "uptime": round(ctx.uptime_s(), 3),
        "pool": reg["pool"],
        "poolReady": reg["poolReady"],
        "store": reg["store"],
        "sandboxLimits": request.app.state.limit_mode,  # probed once, at start
        "sandboxIsolation": request.app.state.isolation,
        "auth": ctx.settings.auth_enabled,
        "accepting": reg["accepting"],
        # Live sessions by the Ray node their worker runs on.
        "sessionsPerNode": reg.get("sessionsPerNode", {}),
    }
    return JSONResponse(body, status_code=200 if reg["accepting"] else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                     "description": "Prometheus text format 0.0.4."}},
)
async def metrics(ctx: Ctx) -> Response:
    """Prometheus text; cluster-wide figures from the registry (public)."""
    text = await ctx.registry.metrics_text()
    return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")
