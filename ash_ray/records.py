"""Records of session attachments and session log lines: Store rows and actor replies.

Kept apart from :mod:`ash_ray.models` (sessions, messages, events) because they belong to
the files/attachments/logs surface and travel on their own paths: attachments through
the registry into the Store, log lines from a worker's sandbox into a ring buffer and the
Store.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypedDict

from pydantic import BaseModel, Field

LogLevel = Literal["stdout", "stderr", "system"]


class LogLine(TypedDict):
    """One line of a session's tool output, as ``GET .../logs`` returns it."""

    index: int
    level: LogLevel
    text: str
    ts: str  # ISO 8601, UTC


class AttachmentRecord(BaseModel):
    """A file attached to a session; its bytes are kept by the Store next to snapshots."""

    id: str
    session_id: str
    message_id: str | None = None
    filename: str = Field(min_length=1, max_length=255)
    mime_type: str = "application/octet-stream"
    size: int = Field(ge=0)
    sha256: str
    created_at: datetime

    def public(self) -> dict[str, Any]:
        """Ash's wire shape (``messageId`` is ``'unlinked'`` when none was given)."""
        return {
            "id": self.id,
            "sessionId": self.session_id,
            "messageId": self.message_id or "unlinked",
            "filename": self.filename,
            "mimeType": self.mime_type,
            "size": self.size,
            "createdAt": self.created_at.isoformat().replace("+00:00", "Z"),
        }
