"""Typed clients of ash-ray's two actors: the only code that names their methods.

:class:`RegistryClient` and :class:`SessionClient` wrap the Ray actor handles. Each method
is declared once in :mod:`ash_ray.actor_api` (:class:`RegistryApi` / :class:`WorkerApi`,
which the actors satisfy, checked by mypy) and called through it, so a misspelled method
or a wrong argument is a type error, not an ``AttributeError`` in production. Here, and
only here:

- the registry is resolved by name (:func:`registry_handle`);
- an error raised in an actor comes back as our own exception (:func:`unwrap`);
- a session worker that went away (evicted, swept, node lost) is re-attached through the
  registry and the call is sent once more, whatever the call.

A reply is a :class:`Call`: ``await`` it in async code (the ingress, the registry), or
``.get(timeout_s)`` it from a Ray driver or task (pipelines), or take its ``.ref()``.
"""

from ash_ray.actor_api import (
    Attached,
    DrainResult,
    Event,
    ExecOutput,
    RegistryApi,
    TurnOutcome,
    WorkerApi,
)
from ash_ray.calls import Call, unwrap
from ash_ray.handles.registry import RegistryClient, registry_handle
from ash_ray.handles.workers import SessionClient, Turn, WorkerClient

__all__ = [
    "Attached", "Call", "DrainResult", "Event", "ExecOutput", "RegistryApi", "RegistryClient",
    "SessionClient", "Turn", "TurnOutcome", "WorkerApi", "WorkerClient", "registry_handle",
    "unwrap",
]
