"""`ash-ray serve`: one pod of the StatefulSet's single Ray cluster.

Pod 0 (or ASH_RAY_ROLE=head) starts the Ray head, the registry and Serve; every other pod
joins the head as a Ray worker node that hosts session workers and a Serve replica. On
SIGTERM each pod drains what it holds (pauses and snapshots its sessions) before leaving.
"""

from __future__ import annotations

import logging
import subprocess
import time
from typing import Any

import ray

from ash_ray import app, supervise
from ash_ray.config import Settings
from ash_ray.names import REGISTRY_NAME

logger = logging.getLogger(__name__)

# Fixed so that the chart's headless Service can name them.
RAY_PORTS = [
    "--node-manager-port", "6380",
    "--object-manager-port", "6381",
    "--ray-client-server-port", "10001",
    "--metrics-export-port", "8080",
    "--disable-usage-stats",
]
JOIN_RETRY_S = 5.0


def role(settings: Settings) -> str:
    if settings.ray_role != "auto":
        return settings.ray_role
    pod = settings.pod_name
    return "worker" if pod and not pod.endswith("-0") else "head"


def _ray_start(args: list[str]) -> int:
    # Ray's daemons in a session of their own: a SIGTERM to our process group (what
    # systemd sends) must reach only us, so that we drain through them before they stop.
    return subprocess.call(["ray", "start", *args], start_new_session=True)


def run_head(settings: Settings, announce: Any) -> int:
    stop = supervise.Shutdown(settings.drain_timeout_s)
    app.prepare_ray_env(settings)
    if settings.ray_address:
        ray.init(address=settings.ray_address, namespace=settings.namespace)
    else:
        code = _ray_start(
            ["--head", "--port", "6379", "--dashboard-host", "0.0.0.0",
             "--dashboard-port", "8265", *RAY_PORTS]
        )
        if code != 0:
            raise SystemExit(f"error: `ray start --head` failed with exit code {code}")
        ray.init(address="auto", namespace=settings.namespace)
    stop.install()  # after ray.init, which sets its own SIGTERM handler
    try:
        app.ensure_registry(settings)
        ingress = app.start_serve(settings)
        announce(settings, ray)
        logger.info("HTTP on :%d, %s", settings.port, ingress)
        stop.wait()
        result = app.drain(settings, stop.drain_budget())
        stop.drained = True
        logger.info("drained: paused %d session(s)", result["paused"])
    finally:
        from ray import serve

        serve.shutdown()
        ray.shutdown()
        if not settings.ray_address:
            subprocess.call(["ray", "stop", "--force"])
    return 0


def run_worker(settings: Settings) -> int:
    """Join the head (retrying while it starts), serve until SIGTERM, drain this node."""
    if not settings.ray_head_address:
        raise SystemExit("error: ASH_RAY_HEAD_ADDRESS is required for a worker pod")
    stop = supervise.Shutdown(settings.drain_timeout_s)
    app.prepare_ray_env(settings)
    while not stop.is_set():
        code = _ray_start(["--address", settings.ray_head_address, *RAY_PORTS])
        if code == 0:
            break
        logger.warning("Ray head %s not reachable yet; retrying", settings.ray_head_address)
        stop.wait(JOIN_RETRY_S)
    if stop.is_set():
        return 0
    ray.init(address="auto", namespace=settings.namespace)
    stop.install()  # after ray.init, which sets its own SIGTERM handler
    node_id = ray.get_runtime_context().get_node_id()
    try:
        # The node leaves the cluster when the head goes; then the pod exits and restarts.
        while not stop.wait(5):
            if not _node_alive(node_id):
                logger.error("this node left the Ray cluster; exiting to rejoin")
                return 1
        registry = ray.get_actor(REGISTRY_NAME, namespace=settings.namespace)
        budget = stop.drain_budget()
        result: dict[str, Any] = ray.get(  # type: ignore[assignment]
            registry.drain.remote(budget, node_id), timeout=budget + 5
        )
        stop.drained = True
        logger.info("drained node %s: paused %d session(s)", node_id[:12], result["paused"])
    finally:
        ray.shutdown()
        subprocess.call(["ray", "stop", "--force"])
    return 0


def _node_alive(node_id: str) -> bool:
    try:
        return any(n["NodeID"] == node_id and n["Alive"] for n in ray.nodes())
    except Exception:
        time.sleep(1)
        return False
