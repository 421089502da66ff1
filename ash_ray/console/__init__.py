"""The web console: static files served at /dashboard, talking to the public HTTP API."""

from ash_ray.console.routes import console_router

__all__ = ["console_router"]
