"""The one exception tree of ash-ray.

::

    AshError                         500  root; every failure we raise is one of these
    ├── ConfigError                  500  a setting is wrong (raised at start, names the variable)
    ├── InvalidInput                 400  the request or argument is malformed
    │   ├── AgentInvalid             400  an agent folder is unusable (no CLAUDE.md, bad settings)
    │   ├── PathOutsideWorkspace     400  a path escapes the session workspace
    │   └── CredentialInvalid        400  a session names a missing or unusable credential
    ├── Unauthorized                 401  missing or wrong API key
    ├── Forbidden                    403  the key is valid but may not do this (admin routes)
    ├── NotFound                     404
    │   ├── AgentNotFound            404
    │   ├── SessionNotFound          404
    │   └── CredentialNotFound       404  (a 400 where a request names it: CredentialInvalid)
    ├── Conflict                     409  the session is in a state that forbids the call
    │   └── SessionBusy              409  a turn is already running
    ├── SessionEnded                 410  the session ended; it cannot be resumed
    ├── PayloadTooLarge              413
    ├── AtCapacity                   503  every sandbox slot runs a turn
    ├── Unavailable                  503  the cluster or store cannot serve right now
    │   └── WorkerReleasing          503  the worker is releasing the session: attach again
    ├── StoreError                   500  the database failed after retries
    ├── SandboxError                 500  a sandbox could not be set up
    └── TurnFailed                   500  a turn ended in error (model API, tool crash)
        └── WorkerLost               500  the turn's worker died and the turn was not continued

Errors cross Ray actor boundaries by pickling, so every class keeps the signature
``__init__(self, message, **fields)`` and ``__reduce__`` rebuilds it with its fields.
One handler in :mod:`ash_ray.api.errors` maps ``http_status`` to the HTTP answer.
"""

from __future__ import annotations

from typing import Any, ClassVar


class AshError(Exception):
    """Root of every error ash-ray raises on purpose."""

    http_status: ClassVar[int] = 500

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = {k: v for k, v in fields.items() if v is not None}
        for key, value in self.fields.items():
            setattr(self, key, value)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.fields))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[AshError], message: str, fields: dict[str, Any]) -> AshError:
    return cls(message, **fields)


class ConfigError(AshError):
    """A setting has a bad value; raised at start with the variable named."""


class InvalidInput(AshError):
    http_status = 400


class AgentInvalid(InvalidInput):
    """The agent folder cannot be deployed."""


class PathOutsideWorkspace(InvalidInput):
    """A file path points outside the session workspace (traversal or symlink)."""


class CredentialInvalid(InvalidInput):
    """A session names a credential that is gone, another tenant's, or does not open."""


class Unauthorized(AshError):
    http_status = 401


class Forbidden(AshError):
    http_status = 403


class NotFound(AshError):
    http_status = 404


class AgentNotFound(NotFound):
    pass


class SessionNotFound(NotFound):
    pass


class CredentialNotFound(NotFound):
    pass


class Conflict(AshError):
    http_status = 409


class SessionBusy(Conflict):
    """A turn is already running in this session."""


class SessionEnded(AshError):
    http_status = 410


class PayloadTooLarge(AshError):
    http_status = 413


class AtCapacity(AshError):
    http_status = 503


class Unavailable(AshError):
    http_status = 503


class WorkerReleasing(Unavailable):
    """The session's worker is being released (stopped, evicted, swept idle, drained):
    callers re-attach through the registry, which resumes the session, and send again."""


class StoreError(AshError):
    pass


class SandboxError(AshError):
    pass


class TurnFailed(AshError):
    """A turn ended with an ``error`` event (raised by pipeline helpers that ask to raise)."""


class WorkerLost(TurnFailed):
    """The worker running a turn died and the turn was not continued
    (``ASH_TURN_RECOVERY=interrupt``, or a cluster restart): send the prompt again."""
