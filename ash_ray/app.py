"""Wiring: the only module that names the concrete registry, worker and Serve app."""

from __future__ import annotations

import logging
import os
from typing import Any

import ray
from ray import serve
from ray.serve import Application

from ash_ray.api.app import create_api
from ash_ray.api.context import IngressContext
from ash_ray.config import Settings, load_settings
from ash_ray.logs import configure_logging
from ash_ray.names import REGISTRY_NAME
from ash_ray.registry.actor import Registry
from ash_ray.session.actor import SessionWorker
from ash_ray.store import open_store

logger = logging.getLogger(__name__)

APP_NAME = "ash"
INGRESS_NAME = "AshIngress"


def ensure_registry(settings: Settings) -> Any:
    """The detached registry, created on the head node if it is not running yet."""
    registry_cls: Any = ray.remote(Registry)
    handle = (
        registry_cls
        .options(
            name=REGISTRY_NAME,
            namespace=settings.namespace,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=-1,
            max_task_retries=-1,
            max_concurrency=10_000,
            num_cpus=0,
            resources={"node:__internal_head__": 0.001},
        )
        .remote(settings, SessionWorker, open_store)
    )
    ray.get(handle.ping.remote(), timeout=120)
    return handle


@serve.ingress()
class AshIngress:
    """Stateless HTTP front door; every replica talks to the one registry."""

    def __init__(self, settings: Settings) -> None:
        configure_logging(settings)
        ensure_registry(settings)
        self.ctx = IngressContext(settings)
        if not settings.auth_enabled:
            logger.warning("ASH_API_KEY is not set: /api/* is served WITHOUT authentication")

    def __serve_build_asgi_app__(self) -> Any:
        return create_api(self.ctx)


def application(settings: Settings) -> Application:
    """The Serve app, sized for long SSE streams and a graceful drain."""
    deployment: Any = serve.deployment(
        AshIngress,
        name=INGRESS_NAME,
        num_replicas=settings.serve_replicas,
        max_ongoing_requests=settings.max_ongoing_requests,
        graceful_shutdown_timeout_s=max(settings.drain_timeout_s, 1.0),
        # One replica a node: each pod of the chart then runs a proxy and answers /health.
        max_replicas_per_node=1,
        ray_actor_options={
            "num_cpus": 0,
            # Our handlers never block the loop: running them on the replica's own loop
            # (not a separate thread) removes a cross-thread hop per request and per chunk.
            "runtime_env": {"env_vars": {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}},
        },
    )
    return deployment.bind(settings)


def build_app(args: dict[str, Any]) -> Application:
    """Application builder for ``serveConfigV2`` (``import_path: ash_ray.app:build_app``)."""
    return application(load_settings(**(args or {})))


def loopback_ray_env() -> None:
    """Keep a local Ray node on 127.0.0.1 (no traffic beyond loopback)."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def start_serve(settings: Settings) -> None:
    """Run the ash app on the connected Ray cluster, HTTP on ASH_HOST:ASH_PORT."""
    serve.start(
        http_options={"host": settings.host, "port": settings.port}, proxy_location="EveryNode"
    )
    serve.run(application(settings), name=APP_NAME, route_prefix="/", blocking=False)


def drain(settings: Settings, timeout_s: float | None = None) -> dict[str, Any]:
    """Pause and snapshot every live session (graceful shutdown)."""
    registry = ray.get_actor(REGISTRY_NAME, namespace=settings.namespace)
    timeout = settings.drain_timeout_s if timeout_s is None else timeout_s
    ref: Any = registry.drain.remote(timeout)
    result: dict[str, Any] = ray.get(ref, timeout=timeout + 10)  # type: ignore[assignment]
    return result
