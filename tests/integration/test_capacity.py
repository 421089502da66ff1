"""Capacity: the least recently used idle session is evicted, running ones never; 503 when
every slot runs a turn. Pooled workers never carry one session's env or files to another."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import ray

from ash_ray import app
from ash_ray.config import Settings
from ash_ray.errors import AtCapacity
from ash_ray.handles import RegistryClient
from tests.helpers import wait_for
from tests.integration.sse import new_session, send

pytestmark = pytest.mark.ray


@pytest.fixture()
def small_registry(
    ray_cluster: None, settings: Settings, agent_dir: Path
) -> Iterator[RegistryClient]:
    cap = settings.model_copy(
        update={
            "namespace": "ash-capacity",
            "max_sandboxes": 2,
            "warm_pool_size": 0,
            "evict_grace_s": 0,  # sessions here are evictable as soon as they are up and idle
            "data_dir": settings.data_dir / "capacity",
        }
    )
    registry = app.ensure_registry(cap)
    registry.deploy_agent("cap", str(agent_dir)).get()
    yield registry
    for s in registry.list_sessions(None, None, 100, 0).get():
        if s.status != "ended":
            registry.end(s.id).get()
    ray.kill(registry.handle, no_restart=True)


def _running(registry: RegistryClient, sid: str) -> bool:
    return any(
        d.get("sessionId") == sid and d.get("turnRunning")
        for d in registry.describe_all().get()
    )


def _bound(registry: RegistryClient, sid: str) -> bool:
    return any(d.get("sessionId") == sid and d.get("bound") for d in registry.describe_all().get())


def test_lru_idle_session_is_evicted_and_503_when_all_run(
    small_registry: RegistryClient, fake_model  # type: ignore[no-untyped-def]
) -> None:
    reg = small_registry
    a = reg.create_session({"agent": "cap"}).get().id
    b = reg.create_session({"agent": "cap"}).get().id
    # A session whose worker is still starting holds its slot; once up and idle, it may go.
    wait_for(lambda: _bound(reg, a) and _bound(reg, b), what="both workers up")
    c = reg.create_session({"agent": "cap"}).get().id  # evicts a (idle, oldest)
    assert reg.get_session(a).get().status == "paused"
    assert reg.live_handle(a).get() is None
    assert reg.get_session(b).get().status == "active"

    # Both replies wait before their first token until the test ends: both turns run.
    with fake_model.hold("slow") as first, fake_model.hold("slow") as second:
        for sid in (b, c):
            reg.session_sync(sid).send("slow", {}).get()
        first.wait_seen()
        second.wait_seen()
        wait_for(lambda: _running(reg, b) and _running(reg, c), what="both turns running")
        wait_for(
            lambda: reg.health().get()["pool"]["running"] == 2,
            what="the registry to see both turns",
        )
        with pytest.raises(AtCapacity) as exc:
            reg.create_session({"agent": "cap"}).get()
        assert "retry" in str(exc.value)
        # A running session is never evicted to make room.
        assert reg.get_session(b).get().status == "active"
        assert reg.get_session(c).get().status == "active"


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
