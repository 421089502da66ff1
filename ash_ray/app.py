"""Wiring: the only module that names the concrete registry, worker and Serve app."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import ray
from ray import serve
from ray.serve import Application

from ash_ray.config import Settings, load_settings
from ash_ray.errors import AshError
from ash_ray.handles import DrainResult, RegistryClient
from ash_ray.ingress import INGRESS_NAME, AshIngress
from ash_ray.jobs.client import ensure_jobs
from ash_ray.names import REGISTRY_NAME
from ash_ray.registry.actor import Registry
from ash_ray.session.actor import SessionWorker
from ash_ray.store import open_store

logger = logging.getLogger(__name__)

APP_NAME = "ash"


def ensure_registry(settings: Settings) -> RegistryClient:
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
            enable_task_events=False,  # see Placement.options
        )
        .remote(settings, SessionWorker, open_store, ensure_jobs)
    )
    registry = RegistryClient(settings.namespace, handle)
    registry.ping().get(120)
    return registry


def application(settings: Settings) -> Application:
    """The Serve app, sized for long SSE streams and a graceful drain."""
    deployment: Any = serve.deployment(
        AshIngress,
        name=INGRESS_NAME,
        num_replicas=settings.serve_replicas,
        max_ongoing_requests=settings.max_ongoing_requests,
        graceful_shutdown_timeout_s=max(settings.drain_timeout_s, 1.0),
        # One replica a node: each pod of the chart answers ASH_PORT and its /health probe.
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


DIRECT_INGRESS_FLAG = "RAY_SERVE_ENABLE_DIRECT_INGRESS"
DIRECT_INGRESS_KEYS = (
    DIRECT_INGRESS_FLAG,
    "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT",
    "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT",
    "RAY_SERVE_PORT_QUARANTINE_S",
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S",
)


def serve_ray_env(settings: Settings) -> dict[str, str]:
    """What Ray's processes must inherit (set before Ray starts) for our Serve setup.

    With direct ingress the ingress replica of each node listens on ASH_PORT itself: one
    process and one Ray hop less per request and per SSE chunk than through the proxy.
    The port range holds just ASH_PORT, released without quarantine, so a replica that
    restarts gets it back at once; draining waits for open streams, not a fixed period.
    """
    if not settings.direct_ingress:
        return {}
    values = (
        "1", str(settings.port), str(settings.port + 1), "0", "0",
    )
    return dict(zip(DIRECT_INGRESS_KEYS, values, strict=True))


def prepare_ray_env(settings: Settings) -> None:
    """Export :func:`serve_ray_env` to this process, whose children start Ray.

    Values inherited from another instance are replaced. Fails early, naming the port,
    when another process listens on ASH_PORT (Serve would only retry its replica).
    """
    env = serve_ray_env(settings)
    if env and not _bindable(settings.host, settings.port):
        raise AshError(f"ASH_PORT {settings.port} is in use by another process")
    for key in DIRECT_INGRESS_KEYS:
        os.environ.pop(key, None)
    os.environ.update(env)


def _bindable(host: str, port: int) -> bool:
    """Whether a listener may bind ``port`` (connections left in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


# max_calls=1: the worker process exits after it answered, instead of idling (66 MiB PSS)
# for as long as the server runs.
@ray.remote(num_cpus=0, max_calls=1)
def _head_env(keys: list[str]) -> list[str]:
    return [os.environ.get(key, "") for key in keys]


def direct_ingress_active(settings: Settings) -> bool:
    """True when the cluster's Ray processes run Serve with direct ingress on ASH_PORT."""
    if not settings.direct_ingress:
        return False
    task: Any = _head_env.options(resources={"node:__internal_head__": 0.001})
    wanted = serve_ray_env(settings)
    keys = [DIRECT_INGRESS_FLAG, "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"]
    if ray.get(task.remote(keys), timeout=120) == [wanted[k] for k in keys]:
        return True
    logger.info("this Ray cluster runs Serve without direct ingress: ASH_PORT is the proxy's")
    return False


def start_serve(settings: Settings) -> str:
    """Run the ash app on the connected Ray cluster, HTTP on ASH_HOST:ASH_PORT.

    Direct ingress: the replicas answer ASH_PORT, the Serve proxy runs beside them on
    ASH_PROXY_PORT. Otherwise the proxy answers ASH_PORT.
    """
    direct = direct_ingress_active(settings)
    port = settings.serve_proxy_port if direct else settings.port
    serve.start(http_options={"host": settings.host, "port": port}, proxy_location="EveryNode")
    serve.run(application(settings), name=APP_NAME, route_prefix="/", blocking=False)
    if direct:
        return f"direct to the ingress replicas (Serve proxy on :{port})"
    return "through the Serve proxy"


def drain(
    settings: Settings, timeout_s: float | None = None, node_id: str | None = None
) -> DrainResult:
    """Pause and snapshot every live session (of one node, if given): graceful shutdown."""
    timeout = settings.drain_timeout_s if timeout_s is None else timeout_s
    return RegistryClient(settings.namespace).drain(timeout, node_id).get(timeout + 10)
