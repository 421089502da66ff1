"""A second Ray node that dies: its sessions come back paused and resume on the head.

The agent is deployed from a folder that is deleted before any session starts: the
workers on the extra node get the agent from the Store (agents are data, issue 11).

A registry of its own (namespace ash-nodeloss, its own store) places sessions on nodes
that declare ``ash_nodeloss_slot``, which only the extra node does; once that node is
lost (kill -9 of its raylet), the slot is gone from the cluster and the sessions resume
on the head with their conversation and the files of their last snapshot.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import ray

from ash_ray import app
from ash_ray.config import Settings, load_settings
from ash_ray.pipeline import AshRay
from tests.helpers import wait_for
from tests.integration.conftest import MODEL_KEY
from tests.integration.ray_node import ExtraNode

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SLOT = "ash_nodeloss_slot"


def test_sessions_of_a_lost_node_come_back_paused_and_resume_on_the_head(
    ray_cluster: None, settings: Settings, agent_dir: Path, fake_model: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with ExtraNode(tmp_path_factory.mktemp("node-loss"), {SLOT: 2}) as node:
        own = load_settings(
            namespace="ash-nodeloss", data_dir=tmp_path_factory.mktemp("ash-nodeloss-data"),
            anthropic_api_key=MODEL_KEY, anthropic_base_url=settings.anthropic_base_url,
            warm_pool_size=0, max_sandboxes=4, session_num_cpus=0.01,
            session_slot_resource=SLOT, sweep_interval_s=3600,
        )
        registry = app.ensure_registry(own)
        ash = AshRay(registry)
        sessions = []
        try:
            folder = tmp_path_factory.mktemp("nodeloss-agent") / "nodeloss"
            shutil.copytree(agent_dir, folder)
            registry.deploy_agent("nodeloss", str(folder)).get()
            shutil.rmtree(folder)  # no node can read the original folder any more
            sessions = [ash.session("nodeloss") for _ in range(2)]
            for i, s in enumerate(sessions):
                seeded = s.worker.exec("cat notes.txt", 30).get(60)
                assert seeded["stdout"].strip() == "seed file"  # the agent's file, from the Store
                cmd = json.dumps({"command": f"echo kept-{i} > kept.txt"})
                assert s.run(f"remember the number {i}\nTOOL Bash {cmd}")["error"] is None
                assert s.describe()["nodeId"] == node.node_id
            assert registry.health().get()["sessionsPerNode"] == {node.node_id: 2}
            assert {row["nodeId"] for row in ash.live()} == {node.node_id}  # ash-ray ps
            node.kill_raylet()
            wait_for(lambda: all(ash.get_session(s.id)["status"] == "paused" for s in sessions),
                     timeout_s=60, what="the lost node's sessions to be paused")
            for i, s in enumerate(sessions):
                s.refresh()  # resumes it, on the head now
                assert s.describe()["nodeId"] not in ("", node.node_id)
                kept = s.worker.exec("cat kept.txt", 30).get(60)
                assert kept["stdout"].strip() == f"kept-{i}"  # the files of its last snapshot
                assert s.run("which number?")["error"] is None
                assert f"remember the number {i}" in json.dumps(fake_model.message_requests[-1])
            per_node = registry.health().get()["sessionsPerNode"]
            assert node.node_id not in per_node and sum(per_node.values()) == 2
        finally:
            for s in sessions:
                s.end()
            ray.kill(registry.handle)
