"""Names of ash-ray's Ray actors: anyone (ingress, CLI, pipeline, dashboard) can find them.

The only place that spells them; :mod:`ash_ray.handles` resolves them.
"""

DEFAULT_NAMESPACE = "ash"
REGISTRY_NAME = "ash-registry"
SESSION_PREFIX = "ash-session-"


def actor_name(sandbox_id: str) -> str:
    """The session worker's actor name; ``sandboxId`` equals the session id unless the
    session was cold-resumed onto a pre-started worker."""
    return f"{SESSION_PREFIX}{sandbox_id}"


def sandbox_of(name: str) -> str | None:
    """The sandbox id of a session worker's actor name, None for other actors."""
    return name.removeprefix(SESSION_PREFIX) if name.startswith(SESSION_PREFIX) else None
