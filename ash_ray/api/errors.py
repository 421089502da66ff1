"""The one place where errors become HTTP answers: ``{"error": "...", "statusCode": N}``."""

from __future__ import annotations

import logging

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
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
        where = ".".join(loc) or "body"
        if err.get("type") == "json_invalid":
            problems.append("request body is not valid JSON")
        elif err.get("type") == "missing":
            problems.append(f"{where} is required")
        else:
            problems.append(f"{where}: {err.get('msg')}")
    return "; ".join(problems) or "invalid request"


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

    @app.exception_handler(Exception)
    async def _any(request: Request, exc: Exception) -> JSONResponse:
        inner = _unwrap(exc)
        if isinstance(inner, AshError):
            return error_response(inner.http_status, inner.message)
        if isinstance(inner, ray.exceptions.RayActorError | ray.exceptions.ActorUnavailableError):
            return error_response(503, "a cluster component is restarting; retry shortly")
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, f"internal error: {type(inner).__name__}")
