"""The Serve ingress: the HTTP front door, in a module of its own.

A replica imports this module, the API and the actor clients; not the registry's, the
session worker's or the ``anthropic`` SDK's modules (about 50 MiB a replica), unless it
must start the registry itself (:func:`find_or_start_registry`).
"""

from __future__ import annotations

import logging
from typing import Any

import ray
from ray import serve

from ash_ray.api.app import create_api
from ash_ray.api.context import IngressContext
from ash_ray.config import Settings
from ash_ray.handles import RegistryClient
from ash_ray.logs import configure_logging
from ash_ray.names import REGISTRY_NAME
from ash_ray.priority import favour_control_plane

logger = logging.getLogger(__name__)

INGRESS_NAME = "AshIngress"


def find_or_start_registry(settings: Settings) -> None:
    """Wait for the registry; start it when none runs (a Serve config deployed alone)."""
    try:
        handle = ray.get_actor(REGISTRY_NAME, namespace=settings.namespace)
    except ValueError:
        from ash_ray.app import ensure_registry  # the registry's and workers' classes

        ensure_registry(settings)  # it starts the jobs actor when the Store holds work
        return
    RegistryClient(settings.namespace, handle).ping().get(120)


@serve.ingress()
class AshIngress:
    """Stateless HTTP front door; every replica talks to the one registry."""

    def __init__(self, settings: Settings) -> None:
        configure_logging(settings)
        favour_control_plane("ingress replica")
        _reusable_direct_ingress_socket()  # the server starts after this constructor
        find_or_start_registry(settings)
        self.ctx = IngressContext(settings)
        if not settings.auth_enabled:
            logger.warning("ASH_API_KEY is not set: /api/* is served WITHOUT authentication")

    def __serve_build_asgi_app__(self) -> Any:
        return create_api(self.ctx)


def _reusable_direct_ingress_socket() -> None:
    """Bind Serve's direct-ingress socket with SO_REUSEPORT, so that a restart can bind it.

    Serve 2.60 binds it with neither SO_REUSEADDR nor SO_REUSEPORT; the connections a
    crashed server leaves in TIME_WAIT would then block ASH_PORT for a minute and a
    restart would fail. Serve lets a caller ask for SO_REUSEPORT only (``enable_so_reuseport``),
    and on Linux that is enough: TIME_WAIT entries keep the reuse-port flag of the listener
    whose connections they were, so a new listener that sets it too (same user) may bind.
    It would also let a second live listener of the same user share the port:
    :func:`ash_ray.app.prepare_ray_env` refuses to start when anything listens on ASH_PORT.
    """
    from ray.serve._private import replica as serve_replica

    start = getattr(serve_replica, "start_asgi_http_server", None)
    if start is None or getattr(start, "ash_reuse", False):
        return

    async def start_reusable(*args: Any, **kwargs: Any) -> Any:
        kwargs["enable_so_reuseport"] = True
        return await start(*args, **kwargs)

    start_reusable.ash_reuse = True  # type: ignore[attr-defined]
    serve_replica.start_asgi_http_server = start_reusable
