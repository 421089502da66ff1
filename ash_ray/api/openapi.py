"""/openapi.json as the API really answers: no 422, the SSE event union, bearer auth.

FastAPI documents a 422 ``HTTPValidationError`` for every route with parameters, but our
error handler answers validation failures with 400 ``{error, statusCode}`` (as Ash does);
each route lists its real error codes itself (:func:`ash_ray.api.deps.fails`).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter

from ash_ray.api.schemas import SseEventUnion

_FASTAPI_ONLY = ("HTTPValidationError", "ValidationError")


def build(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    for path in doc.get("paths", {}).values():
        for operation in path.values():
            responses = operation.get("responses", {})
            responses.pop("422", None)
            for code, answer in responses.items():
                content = answer.get("content")
                if code[0] in "45" and content and "application/json" not in content:
                    # A streaming route's errors are JSON too (answered before the stream).
                    answer["content"] = {"application/json": next(iter(content.values()))}
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in _FASTAPI_ONLY:
        schemas.pop(name, None)
    events = TypeAdapter(SseEventUnion).json_schema(
        ref_template="#/components/schemas/{model}", mode="serialization"
    )
    schemas.update(events.pop("$defs", {}))
    schemas["SseEvent"] = events
    return doc


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
