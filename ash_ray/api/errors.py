"""The one place where errors become HTTP answers: ``{"error": "...", "statusCode": N}``."""

from __future__ import annotations

import logging
from typing import Any

import ray
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ash_ray.errors import AshError

logger = logging.getLogger(__name__)


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "statusCode": status}, status_code=status)


def _describe_validation(exc: RequestValidationError) -> str:
    return "; ".join(_describe(err) for err in exc.errors()) or "invalid request"


def _describe(err: Any) -> str:
    loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
    where = ".".join(loc) or "body"
    kind = err.get("type", "")
    if kind == "json_invalid":
        return "request body is not valid JSON"
    if kind == "missing":
        return f"{where} is required"
    if kind == "not_implemented":
        return str(err.get("msg"))
    if kind.startswith("uuid") and loc[:1] == ["path"]:
        # As parse_uuid answered before ids were typed: "session id must be a UUID, got '...'"
        return f"{loc[-1].replace('_', ' ')} must be a UUID, got {err.get('input')!r}"
    if kind == "literal_error" and loc[:1] == ["query"]:
        expected = str(err.get("ctx", {}).get("expected", "")).replace("'", "")
        return f"{loc[-1]} must be one of {expected.replace(' or ', ', ')}"
    return f"{where}: {err.get('msg')}"


def _unwrap(exc: BaseException) -> BaseException:
    """Ray wraps errors raised in actors; find our own inside."""
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = exc.as_instanceof_cause()
        inner = getattr(exc, "cause", None)
        return inner if isinstance(inner, AshError) else cause
    return exc


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, _describe_validation(exc))

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail))

    # AshError and Ray's errors get their own handlers (Starlette's exception middleware):
    # the catch-all for Exception runs in the server-error middleware, which answers and
    # then re-raises, logging a traceback for what is an ordinary 404.
    app.add_exception_handler(AshError, _any)
    app.add_exception_handler(ray.exceptions.RayError, _any)
    app.add_exception_handler(Exception, _any)


async def _any(request: Request, exc: Exception) -> JSONResponse:
    return answer(exc, request.method, request.url.path)


def answer(exc: BaseException, method: str, path: str) -> JSONResponse:
    """The answer to an error a route (or the ingress's lane) raised on ``method path``."""
    inner = _unwrap(exc)
    if isinstance(inner, AshError):
        return error_response(inner.http_status, inner.message)
    if isinstance(inner, ray.exceptions.RayActorError | ray.exceptions.ActorUnavailableError):
        return error_response(503, "a cluster component is restarting; retry shortly")
    logger.exception("unhandled error on %s %s", method, path)
    return error_response(500, f"internal error: {type(inner).__name__}")
