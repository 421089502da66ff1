"""`ash-ray ps` shows a live session with its agent and node, from another Ray driver."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import ray

from ash_ray.inspect import live_sessions
from ash_ray.pipeline import connect

pytestmark = pytest.mark.ray


def test_ps_lists_a_live_session_with_agent_and_node(agent: str) -> None:
    node_ids = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    with connect().session(agent) as session:
        print(f"session {session.id}")
        ray.get(session.ask.remote("be seen"))

        rows = {r["sessionId"]: r for r in live_sessions(namespace="ash") if r.get("bound")}
        mine = rows[session.id]
        assert mine["agent"] == agent and mine["nodeId"] in node_ids
        assert mine["numTurns"] == 1 and mine["status"] == "active"

        # The CLI, as an operator runs it: a separate driver joining the cluster's GCS.
        gcs = ray.get_runtime_context().gcs_address
        env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        proc = subprocess.run(
            [sys.executable, "-m", "ash_ray", "ps", "--json", "--address", gcs],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        listed = {r.get("sessionId"): r for r in json.loads(proc.stdout)}
        assert session.id in listed, proc.stdout
        row = listed[session.id]
        assert row["agent"] == agent and row["status"] == "active"
        assert row["nodeId"] == mine["nodeId"] and row["turnRunning"] is False
        assert row["usage"]["output_tokens"] > 0

    after = {r.get("sessionId") for r in live_sessions(namespace="ash")}
    assert session.id not in after
