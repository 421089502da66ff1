"""Serve the console's static files at /dashboard.

The pages are public and hold no data: every figure comes from /api/* with the key the
person pastes into the page (kept in the browser's sessionStorage). Nothing here reads a
key or writes one into a page or script, unlike Ash's ``/dashboard/config.js``.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from ash_ray.errors import NotFound

_STATIC = resources.files("ash_ray.console") / "static"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# No inline script or style, no third-party origin: a page can only talk to this server.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _asset(name: str) -> Response:
    suffix = name[name.rfind(".") :] if "." in name else ""
    # Only plain file names of the package folder: no path separators, no dot files.
    if "/" in name or "\\" in name or name.startswith(".") or suffix not in _TYPES:
        raise NotFound(f"no console file {name!r}")
    item = _STATIC / name
    if not item.is_file():
        raise NotFound(f"no console file {name!r}")
    return Response(item.read_bytes(), media_type=_TYPES[suffix], headers=_HEADERS)


def console_router() -> APIRouter:
    router = APIRouter(prefix="/dashboard", tags=["console"], include_in_schema=False)

    @router.get("")
    async def root() -> RedirectResponse:
        # A trailing slash, so that the page's relative script URLs resolve under /dashboard/.
        return RedirectResponse("dashboard/", status_code=307)

    @router.get("/")
    async def index() -> Response:
        return _asset("index.html")

    @router.get("/{name}")
    async def asset(name: str) -> Response:
        return _asset(name)

    return router
