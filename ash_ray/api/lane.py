"""The API's hot path past the router: a message to a session (issue 14).

``POST /api/sessions/{id}/messages`` carries most of an API's traffic. FastAPI's routing
and dependency resolution cost it about half a millisecond on a replica, some 7% of the
overhead to the model's first token. This lane answers such a request itself, but only
when it can answer it exactly as the route does:

- a canonical session id, a JSON body whose stated size is small;
- a key that resolves, a session of the caller's tenant, a body that validates.

Any other request goes on to the app, and so does one that fails a check, with its body:
the route then gives the documented answer. Past the checks, the lane and the route run
one function (:func:`~ash_ray.api.routes_messages.turn_stream`), and their errors become
answers in one place (:func:`~ash_ray.api.errors.answer`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from fastapi.security.utils import get_authorization_scheme_param
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ash_ray.api import errors
from ash_ray.api.auth import Gatekeeper
from ash_ray.api.context import IngressContext
from ash_ray.api.routes_messages import turn_stream
from ash_ray.api.uploads import MIB
from ash_ray.models import MessageCreate

_PATH = re.compile(
    r"/api/sessions/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/messages"
)
# A bigger body takes the app's path, which counts it against the message limit.
MAX_BYTES = MIB


class TurnLane:
    """Pure ASGI, outside the app's own middleware (see the module doc)."""

    def __init__(self, app: ASGIApp, ctx: IngressContext, gate: Gatekeeper) -> None:
        self.app = app
        self.ctx = ctx
        self.gate = gate
        self.max_bytes = min(MAX_BYTES, ctx.settings.message_body_max_mb * MIB)
        self.served = 0  # messages the lane answered

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sid = _session_of(scope)
        size = _json_size(scope, self.max_bytes) if sid is not None else None
        if sid is None or size is None:
            await self.app(scope, receive, send)
            return
        read = await _Read.whole(receive, size)
        message = None if read.body is None else await self._checked(scope, sid, read.body)
        if message is None:
            await self.app(scope, read.replayed(receive), send)
            return
        self.served += 1
        response: Response
        try:
            response = await turn_stream(self.ctx, sid, message)
        except Exception as exc:  # answered as the app answers it
            response = errors.answer(exc, "POST", scope["path"])
        await response(scope, receive, send)

    async def _checked(self, scope: Scope, sid: str, body: bytes) -> MessageCreate | None:
        """The message, when the route would take it as it is; None leaves it to the route."""
        try:
            caller = await self.gate.resolve(_bearer_token(scope))
            await self.gate.check_owner(sid, caller)
            return MessageCreate.model_validate(json.loads(body))
        except Exception:  # whatever it is, the route answers it
            return None


def _route_path(scope: Scope) -> str:
    """The path the app routes on: without the root path it is mounted under (Starlette's rule)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] == "/":
        return path[len(root) :]
    return path


def _session_of(scope: Scope) -> str | None:
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    found = _PATH.fullmatch(_route_path(scope))
    return found.group(1) if found else None


def _header(scope: Scope, name: bytes) -> str | None:
    """The first value of a header, as Starlette reads it."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _json_size(scope: Scope, max_bytes: int) -> int | None:
    """The body's stated size when it is JSON and at most ``max_bytes``; else None."""
    kind, length = _header(scope, b"content-type"), _header(scope, b"content-length")
    if kind is None or kind.split(";")[0].strip().lower() != "application/json":
        return None
    if length is None or not length.isdigit() or int(length) > max_bytes:
        return None
    return int(length)


def _bearer_token(scope: Scope) -> str:
    """The key as the route's HTTPBearer and require_key read it ("" for none)."""
    scheme, key = get_authorization_scheme_param(_header(scope, b"authorization"))
    return key.strip() if scheme.lower() == "bearer" else ""


@dataclass
class _Read:
    """A request's messages as received, and its body: None when it did not come whole at
    the stated size (a disconnect, or more than stated)."""

    messages: list[Message] = field(default_factory=list)
    body: bytes | None = None

    @classmethod
    async def whole(cls, receive: Receive, size: int) -> _Read:
        read = cls()
        while True:
            message = await receive()
            read.messages.append(message)
            if message["type"] != "http.request":
                return read
            if not message.get("more_body", False):
                break
        body = b"".join(m.get("body", b"") for m in read.messages)
        read.body = body if len(body) == size else None
        return read

    def replayed(self, receive: Receive) -> Receive:
        """``receive`` as the app would have had it: the messages already read first."""
        pending = list(self.messages)

        async def replay() -> Message:
            return pending.pop(0) if pending else await receive()

        return replay
