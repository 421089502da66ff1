"""Capacity: the least recently used idle session is evicted, running ones never; 503 when
every slot runs a turn. Pooled workers never carry one session's env or files to another."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray

from ash_ray import app
from ash_ray.config import Settings
from ash_ray.errors import AtCapacity
from tests.helpers import wait_for
from tests.integration.sse import new_session, send

pytestmark = pytest.mark.ray


@pytest.fixture()
def small_registry(
    ray_cluster: None, settings: Settings, agent_dir: Path
) -> Iterator[Any]:
    cap = settings.model_copy(
        update={
            "namespace": "ash-capacity",
            "max_sandboxes": 2,
            "warm_pool_size": 0,
            "data_dir": settings.data_dir / "capacity",
        }
    )
    registry = app.ensure_registry(cap)
    ray.get(registry.deploy_agent.remote("cap", str(agent_dir)))
    yield registry
    for s in ray.get(registry.list_sessions.remote(None, None, 100, 0)):
        if s["status"] != "ended":
            ray.get(registry.end.remote(s["id"]))
    ray.kill(registry, no_restart=True)


def _running(registry: Any, sid: str) -> bool:
    return any(
        d.get("sessionId") == sid and d.get("turnRunning")
        for d in ray.get(registry.describe_all.remote())
    )


def test_lru_idle_session_is_evicted_and_503_when_all_run(
    small_registry: Any, fake_model  # type: ignore[no-untyped-def]
) -> None:
    reg = small_registry
    a = ray.get(reg.create_session.remote({"agent": "cap"}))["id"]
    b = ray.get(reg.create_session.remote({"agent": "cap"}))["id"]
    c = ray.get(reg.create_session.remote({"agent": "cap"}))["id"]  # evicts a (idle, oldest)
    assert ray.get(reg.get_session.remote(a))["status"] == "paused"
    assert ray.get(reg.live_handle.remote(a)) is None
    assert ray.get(reg.get_session.remote(b))["status"] == "active"

    # Both replies wait before their first token until the test ends: both turns run.
    with fake_model.hold("slow") as first, fake_model.hold("slow") as second:
        for sid in (b, c):
            _public, handle = ray.get(reg.attach.remote(sid))
            ray.get(handle.send.remote("slow", {}))
        first.wait_seen()
        second.wait_seen()
        wait_for(lambda: _running(reg, b) and _running(reg, c), what="both turns running")
        wait_for(
            lambda: ray.get(reg.health.remote())["pool"]["running"] == 2,
            what="the registry to see both turns",
        )
        with pytest.raises(AtCapacity) as exc:
            ray.get(reg.create_session.remote({"agent": "cap"}))
        assert "retry" in str(exc.value)
        # A running session is never evicted to make room.
        assert ray.get(reg.get_session.remote(b))["status"] == "active"
        assert ray.get(reg.get_session.remote(c))["status"] == "active"


def test_pooled_workers_do_not_leak_between_sessions(http: httpx.Client, agent: str) -> None:
    first = new_session(http, agent, extraEnv={"LEAKY_SECRET": "from-first"})
    out = send(http, first, 'TOOL Bash {"command": "echo $LEAKY_SECRET; touch mine.txt"}')
    assert "from-first" in json.dumps(next(f[2] for f in out if f[1] == "tool_result"))
    http.delete(f"/api/sessions/{first}")
    second = new_session(http, agent)
    out = send(http, second, 'TOOL Bash {"command": "echo ${LEAKY_SECRET:-none}; ls"}')
    result = json.dumps(next(f[2] for f in out if f[1] == "tool_result"))
    assert "from-first" not in result and "none" in result
    assert "mine.txt" not in result
