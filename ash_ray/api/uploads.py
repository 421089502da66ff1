"""What the upload and download routes share: body limits, base64, file headers, and the
choice between a session's live workspace and its snapshot.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import mimetypes
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import quote

from ash_ray.api.context import IngressContext
from ash_ray.config import Settings
from ash_ray.errors import InvalidInput, NotFound, PayloadTooLarge
from ash_ray.handles import SessionClient
from ash_ray.session import files

T = TypeVar("T")

# ``source`` as Ash's clients type it: the live sandbox, or the stored snapshot.
LIVE, SNAPSHOT = "sandbox", "snapshot"
# JSON and field names around the base64 payload (and the paths of a 500-file batch).
_ENVELOPE_BYTES = 1024 * 1024

_UPLOAD_ROUTES = (
    (re.compile(r"/api/sessions/[^/]+/files/?$"), "max_upload_batch_bytes"),
    (re.compile(r"/api/sessions/[^/]+/workspace/?$"), "max_bundle_bytes"),
    (re.compile(r"/api/sessions/[^/]+/attachments/?$"), "max_attachment_size"),
)


def base64_size(decoded: int) -> int:
    """Bytes of the base64 text of ``decoded`` bytes."""
    return (decoded + 2) // 3 * 4


# A message's content blocks carry images and PDFs as base64: that route has its own limit.
_MESSAGE_ROUTE = re.compile(r"/api/sessions/[^/]+/messages/?$")
MIB = 1024 * 1024


def upload_limits(settings: Settings) -> Callable[[str, str], int]:
    """The request body limit of a route: an upload route follows its payload's limit
    (base64 grows it by a third), the message route ASH_MESSAGE_BODY_MAX_MB, every other
    route the general ASH_MAX_BODY_BYTES."""

    def limit_for(method: str, path: str) -> int:
        if method == "POST":
            if _MESSAGE_ROUTE.search(path):
                return settings.message_body_max_mb * MIB
            for pattern, field in _UPLOAD_ROUTES:
                # search, not match: an app mounted under a route prefix (/pg) has it in path
                if pattern.search(path):
                    payload = base64_size(int(getattr(settings, field))) + _ENVELOPE_BYTES
                    return max(settings.max_body_bytes, payload)
        return settings.max_body_bytes

    return limit_for


def decode(text: str, what: str, max_bytes: int) -> bytes:
    """Strict base64 (whitespace allowed) of at most ``max_bytes`` decoded bytes."""
    compact = "".join(text.split())
    if len(compact) > base64_size(max_bytes):
        raise PayloadTooLarge(
            f"{what} is about {len(compact) * 3 // 4} bytes, over the {max_bytes}-byte limit"
        )
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{what} is not valid base64") from None
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"{what} is {len(data)} bytes, over the {max_bytes}-byte limit")
    return data


def disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback and the RFC 5987 UTF-8 name."""
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def media_type(filename: str) -> str:
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


async def on_workspace(
    ctx: IngressContext,
    session_id: str,
    live: Callable[[SessionClient], Awaitable[T]],
    cold: Callable[..., T],
    *args: Any,
    mutates: bool = False,
) -> tuple[T, str]:
    """Run an operation on the session's live workspace (through its worker, on whatever
    node it runs) or, when it has no worker, on its snapshot; and say which.

    A change to a snapshot is written back only while the session is still cold.
    """
    session = await ctx.live_session(session_id)
    if session is not None:
        return await live(session), LIVE
    snapshot = await ctx.registry.get_snapshot(session_id)
    if snapshot is None:
        raise NotFound(f"no workspace available for session {session_id}: it has no snapshot")
    result, new = await asyncio.to_thread(files.on_snapshot, snapshot, cold, *args, mutates=mutates)
    if new is not None:
        await ctx.registry.replace_snapshot(session_id, new)
    return result, SNAPSHOT
