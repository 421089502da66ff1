"""Session workers land only on nodes that declare ``ash_session_slot``, no more than declared.

A second Ray node joins the shared test cluster on loopback with two slots; a second
registry (its own namespace and store) sees them when it starts. Its sessions must land
on that node, the third must get a 503 while both run turns (or wait for one, when the
caller asks to), and nothing queues without bound. The extra node is stopped by
terminating its own process: never ``ray stop``, which would take the shared cluster down.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import pytest
import ray

from ash_ray import app
from ash_ray.config import Settings, load_settings
from ash_ray.errors import AtCapacity
from ash_ray.pipeline import AshRay
from ash_ray.testing.fake_anthropic import Reply, text
from tests.helpers import wait_for
from tests.integration.conftest import MODEL_KEY

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SLOTS = 2
NAMESPACE = "ash-slots"

# What `ray start --address=... --block` does, without its CLI: the CLI refuses to add a
# node while RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 ("Multi-node Ray clusters are not
# supported"), and with =1 it rewrites a 127.0.0.1 GCS address to the host's interface
# address, i.e. traffic outside loopback. ray.cluster_utils adds nodes the same way.
NODE_SCRIPT = """
import json, signal, sys
from ray._private.node import Node
from ray._private.parameter import RayParams

gcs, resources = sys.argv[1], json.loads(sys.argv[2])
params = RayParams(
    gcs_address=gcs, node_ip_address="127.0.0.1", num_cpus=1, num_gpus=0,
    memory=512 * 1024 * 1024, object_store_memory=100 * 1024 * 1024, resources=resources,
    min_worker_port=0, max_worker_port=0, node_manager_port=0, include_log_monitor=False,
)
params.dashboard_agent_listen_port = None  # a free port, not the head agent's
Node(params, head=False, shutdown_at_exit=True, spawn_reaper=True)
print("node started", flush=True)
while True:
    signal.pause()  # SIGTERM: the node's handler stops its raylet and workers, then exits
"""


@pytest.fixture(scope="module")
def slot_node(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Node id of an extra Ray node (loopback) with 1 CPU, 512 MiB and two session slots."""
    gcs = ray.get_runtime_context().gcs_address
    log = tmp_path_factory.mktemp("slot-node") / "node.log"
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    resources = json.dumps({"ash_session_slot": SLOTS})
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", NODE_SCRIPT, gcs, resources],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    print(f"extra node: pid {proc.pid}, log {log}")

    def joined() -> str | None:
        if proc.poll() is not None:
            raise AssertionError(f"the node exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        for node in ray.nodes():
            if node["Alive"] and node["Resources"].get("ash_session_slot") == SLOTS:
                assert node["NodeManagerAddress"] == "127.0.0.1", node
                return str(node["NodeID"])
        return None

    node_id = None
    try:
        node_id = wait_for(joined, timeout_s=120, interval_s=0.5, what="the slotted node")
        yield node_id
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: only what it started
            proc.wait(timeout=30)
        wait_for(
            lambda: not any(n["Alive"] for n in ray.nodes() if n["NodeID"] == node_id),
            timeout_s=60, what="the extra node to leave the cluster",
        )  # fmt: skip


@pytest.fixture(scope="module")
def slotted(
    slot_node: str, settings: Settings, agent_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AshRay]:
    """A second registry (namespace ash-slots) that saw the slots when it started."""
    slot_settings = load_settings(
        namespace=NAMESPACE,
        data_dir=tmp_path_factory.mktemp("ash-slots-data"),
        anthropic_api_key=MODEL_KEY,
        anthropic_base_url=settings.anthropic_base_url,
        warm_pool_size=0,
        max_sandboxes=8,  # more than the slots: the slots must be what limits
        capacity_wait_s=0,
        session_num_cpus=0.25,
        session_memory_mb=64,
        sweep_interval_s=3600,
    )
    registry = app.ensure_registry(slot_settings)
    try:
        assert registry.health().get()["sessionSlots"] == SLOTS
        registry.deploy_agent("slots", str(agent_dir)).get()
        yield AshRay(registry)
    finally:
        for row in registry.describe_all().get():
            if row.get("sessionId"):
                registry.end(row["sessionId"]).get()
        ray.kill(registry.handle)


def test_sessions_land_on_the_slotted_node_and_the_third_gets_503(
    slotted: AshRay, slot_node: str, fake_model: Any
) -> None:
    first, second = slotted.session("slots"), slotted.session("slots")
    print(f"sessions {first.id} {second.id} on node {slot_node}")
    for session in (first, second):
        info = session.describe()
        assert info["nodeId"] == slot_node, "a session landed off the slotted node"
    assert ray.available_resources().get("ash_session_slot", 0) == 0

    # Both turns wait for the model until released: both run for as long as the test says.
    fake_model.script(*[Reply([text("slow " * 12)])] * 2)
    holds = [fake_model.hold("take your time") for _ in range(2)]
    turns = [s.ask.remote("take your time", include_partial_messages=True) for s in (first, second)]
    try:
        wait_for(
            lambda: slotted.registry.health().get()["pool"]["running"] == 2,
            timeout_s=30, what="both turns running (as the registry sees them)",
        )  # fmt: skip
        started = time.monotonic()
        with pytest.raises(AtCapacity) as full:
            slotted.session("slots")
        assert time.monotonic() - started < 5, "capacity_wait_s=0 must answer at once"
        assert full.value.http_status == 503 and "retry" in str(full.value)

        # Asked to wait, a create gets a slot once a turn ends (the idle session goes cold).
        with ThreadPoolExecutor(1) as pool:
            create = pool.submit(slotted.session, "slots", wait_s=60)
            # Not proof it waits forever, but a create that did not wait returns at once.
            assert not wait([create], timeout=2).done, "the create did not wait for a slot"
            holds[0].release()
            third = create.result(timeout=60)
    finally:
        fake_model.release_all()
        outcomes = ray.get(turns, timeout=120)
    assert all(o["result"] == "slow " * 12 for o in outcomes), outcomes
    assert third.describe()["nodeId"] == slot_node

    def bound() -> list[dict[str, Any]]:
        return [w for w in slotted.registry.describe_all().get() if w.get("bound")]

    # A create answers before its worker is bound (the bind follows in the background).
    wait_for(lambda: len(bound()) == SLOTS, timeout_s=30, what="the third session bound")
    assert {w["nodeId"] for w in bound()} == {slot_node}
    statuses = {slotted.get_session(s.id)["status"] for s in (first, second)}
    assert "paused" in statuses, "one idle session must have been evicted cold"
    for session in (first, second, third):
        session.end()
    # Their workers went back to the warm pool with their slots: new sessions get both.
    wait_for(lambda: not bound(), timeout_s=30, what="every session released")
    again = [slotted.session("slots") for _ in range(SLOTS)]  # capacity_wait_s=0: no wait
    assert {s.describe()["nodeId"] for s in again} == {slot_node}
    for session in again:
        session.end()


def test_a_cold_resume_lands_on_the_slotted_node_again(slotted: AshRay, slot_node: str) -> None:
    session = slotted.session("slots")
    assert session.run("before")["result"] == "echo: before"
    slotted.registry.stop(session.id).get()  # worker released, session cold
    assert slotted.get_session(session.id)["status"] == "stopped"
    session.refresh()  # attach resumes it on a new worker
    assert session.describe()["nodeId"] == slot_node
    assert session.run("after")["result"] == "echo: after"
    session.end()
