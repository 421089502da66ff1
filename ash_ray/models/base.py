"""What the wire schemas and the store rows share: statuses, names, ids, times, ``Wire``."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

SessionStatus = Literal["starting", "active", "paused", "stopped", "ended", "error"]
SESSION_STATUSES: tuple[str, ...] = ("starting", "active", "paused", "stopped", "ended", "error")
AGENT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Tenants are named like agents; `default` owns ASH_API_KEY and everything made without a key.
TENANT_RE = AGENT_NAME_RE
DEFAULT_TENANT = "default"
CredentialType = Literal["anthropic", "openai", "bedrock", "custom"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def new_id() -> str:
    return str(uuid.uuid4())


def parse_uuid(value: str, what: str = "session id") -> str:
    """Return the canonical form of a uuid string or raise InvalidInput naming ``what``."""
    from ash_ray.errors import InvalidInput

    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise InvalidInput(f"{what} must be a UUID, got {value!r}") from None


class Wire(BaseModel):
    """Base of JSON bodies: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def dump(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")
