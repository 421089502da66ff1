"""Names of ash-ray's Ray actors: anyone (ingress, CLI, pipeline, dashboard) can find them."""

REGISTRY_NAME = "ash-registry"


def actor_name(sandbox_id: str) -> str:
    """The session worker's actor name; ``sandboxId`` equals the session id unless the
    session was cold-resumed onto a pre-started worker."""
    return f"ash-session-{sandbox_id}"
