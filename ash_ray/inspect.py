"""Operator views of a running cluster: live session workers joined with Ray's state API."""

from __future__ import annotations

from typing import Any

import ray

from ash_ray.handles import RegistryClient
from ash_ray.names import DEFAULT_NAMESPACE, actor_name


def live_sessions(
    address: str = "auto", namespace: str = DEFAULT_NAMESPACE
) -> list[dict[str, Any]]:
    """One row per live session worker: the registry's view plus Ray's actor state."""
    if not ray.is_initialized():
        ray.init(address=address, namespace=namespace, log_to_driver=False)
    rows = RegistryClient(namespace).describe_all().get(30)
    try:
        from ray.util.state import list_actors

        states = {
            a.name: a
            for a in list_actors(
                filters=[("ray_namespace", "=", namespace)], limit=10_000,
                raise_on_missing_output=False,
            )
        }
    except Exception:
        states = {}
    for row in rows:
        actor = states.get(actor_name(row.get("sandboxId", "")))
        if actor is not None:
            row["actorId"] = actor.actor_id
            row["state"] = actor.state
    return rows
