"""An extra Ray node on loopback joined to the test cluster, for tests that place or lose
sessions on a second node.

``ray start --address`` cannot be used as such on one host: the CLI refuses to add a node
while ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, and with ``=1`` it rewrites a 127.0.0.1 GCS
address to the host's interface address (traffic outside loopback). The node is started
the way ``ray.cluster_utils`` does it, in its own process group, with the cluster's auth
token in its environment. Only the processes it started are ever killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

import psutil
import ray

from ash_ray import cluster_file
from tests.helpers import wait_for

NODE_SCRIPT = """
import json, signal, sys
from ray._private.node import Node
from ray._private.parameter import RayParams

gcs, resources, cpus = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])
params = RayParams(
    gcs_address=gcs, node_ip_address="127.0.0.1", num_cpus=cpus, num_gpus=0,
    memory=512 * 1024 * 1024, object_store_memory=100 * 1024 * 1024, resources=resources,
    min_worker_port=0, max_worker_port=0, node_manager_port=0, include_log_monitor=False,
)
params.dashboard_agent_listen_port = None  # a free port, not the head agent's
Node(params, head=False, shutdown_at_exit=True, spawn_reaper=True)
print("node started", flush=True)
while True:
    signal.pause()  # SIGTERM: the node's handler stops its raylet and workers, then exits
"""


class ExtraNode:
    """``with ExtraNode(log_dir, {"ash_session_slot": 2}) as node:`` -> ``node.node_id``."""

    def __init__(self, log_dir: Path, resources: dict[str, float], num_cpus: float = 1) -> None:
        self.log = log_dir / "extra-node.log"
        self.resources = resources
        self.num_cpus = num_cpus
        self.proc: subprocess.Popen[bytes] | None = None
        self.node_id = ""

    def __enter__(self) -> ExtraNode:
        gcs = ray.get_runtime_context().gcs_address
        env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        mode, token = cluster_file._current_auth()
        if mode == "token" and token and cluster_file.TOKEN_VAR not in env:
            env[cluster_file.AUTH_MODE_VAR], env[cluster_file.TOKEN_VAR] = "token", token
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", NODE_SCRIPT, gcs, json.dumps(self.resources),
                 str(self.num_cpus)],
                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )  # fmt: skip
        print(f"extra node: pid {self.proc.pid}, log {self.log}")
        self.node_id = wait_for(self._joined, timeout_s=120, interval_s=0.5,
                                what="the extra node to join")  # fmt: skip
        return self

    def _joined(self) -> str | None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"the node exited {self.proc.returncode}:\n"
                                 f"{self.log.read_text()[-3000:]}")  # fmt: skip
        for node in ray.nodes():
            if node["Alive"] and all(
                node["Resources"].get(k) == v for k, v in self.resources.items()
            ):
                assert node["NodeManagerAddress"] == "127.0.0.1", node
                return str(node["NodeID"])
        return None

    def raylet_pid(self) -> int:
        """The pid of this node's raylet (a descendant of the process started here)."""
        assert self.proc is not None
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            if "raylet" in child.name():
                return child.pid
        raise AssertionError("the extra node has no raylet")

    def kill_raylet(self) -> None:
        """kill -9 of the raylet: the node is lost with every worker on it."""
        os.kill(self.raylet_pid(), signal.SIGKILL)
        wait_for(lambda: not self.alive(), timeout_s=90, what="the node to be marked dead")

    def alive(self) -> bool:
        return any(n["Alive"] for n in ray.nodes() if n["NodeID"] == self.node_id)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own group: only what it started
            self.proc.wait(timeout=30)
        if self.node_id:
            wait_for(lambda: not self.alive(), timeout_s=60,
                     what="the extra node to leave the cluster")  # fmt: skip
