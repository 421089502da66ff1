"""Auth and bad input at the HTTP edge: clear 4xx with the problem named, never a 500."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest

from tests.integration.sse import new_session, send

pytestmark = pytest.mark.ray


def _error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["statusCode"] == status
    return str(body["error"])


def test_api_requires_the_bearer_key(server: str) -> None:
    assert "missing API key" in _error(httpx.get(server + "/api/agents"), 401)
    wrong = httpx.get(server + "/api/agents", headers={"Authorization": "Bearer nope"})
    assert "invalid API key" in _error(wrong, 401)
    basic = httpx.get(server + "/api/sessions", headers={"Authorization": "Basic abc"})
    _error(basic, 401)


def test_public_endpoints_need_no_key(server: str) -> None:
    health = httpx.get(server + "/health").json()
    assert health["status"] == "ok"
    for key in ("version", "activeSessions", "activeSandboxes", "uptime", "pool"):
        assert key in health
    for key in ("total", "cold", "warming", "warm", "waiting", "running", "maxCapacity",
                "resumeWarmHits", "resumeColdHits", "preWarmHits"):
        assert key in health["pool"]
    assert health["sandboxLimits"] in ("cgroup2", "cgroup1", "rlimit")
    metrics = httpx.get(server + "/metrics").text
    for name in ("ash_up 1.0", "ash_active_sessions", "ash_pool_max_capacity"):
        assert name in metrics
    assert httpx.get(server + "/openapi.json").json()["info"]["title"] == "ash-ray"
    assert httpx.get(server + "/docs").status_code == 200


def test_bad_input_gets_named_4xx(http: httpx.Client, agent: str, tmp_path: Path) -> None:
    bad_json = http.post(
        "/api/sessions", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert "not valid JSON" in _error(bad_json, 400)
    assert "agent is required" in _error(http.post("/api/sessions", json={}), 400)
    assert "UUID" in _error(http.get("/api/sessions/not-a-uuid"), 400)
    assert "does not exist" in _error(http.get(f"/api/sessions/{uuid.uuid4()}"), 404)
    assert "not deployed" in _error(http.post("/api/sessions", json={"agent": "ghost"}), 404)
    no_claude = http.post("/api/agents", json={"name": "empty", "path": str(tmp_path)})
    assert "CLAUDE.md" in _error(no_claude, 400)
    assert "name" in _error(http.post("/api/agents", json={"name": "../x", "path": "/"}), 400)
    big = http.post("/api/sessions", content=b"x" * (11 * 1024 * 1024))
    assert "limit" in _error(big, 413)
    sid = new_session(http, agent)
    assert "content" in _error(http.post(f"/api/sessions/{sid}/messages", json={}), 400)
    assert "status" in _error(http.get("/api/sessions", params={"status": "zombie"}), 400)
    assert http.delete(f"/api/sessions/{sid}").status_code == 200
    ended = http.post(f"/api/sessions/{sid}/messages", json={"content": "hi"})
    assert "ended" in _error(ended, 410)
    assert "ended" in _error(http.post(f"/api/sessions/{sid}/resume"), 410)


def test_one_turn_at_a_time(http: httpx.Client, agent: str, fake_model) -> None:  # type: ignore[no-untyped-def]
    sid = new_session(http, agent)
    with fake_model.hold("slow") as hold:
        with http.stream("POST", f"/api/sessions/{sid}/messages", json={"content": "slow"}) as r:
            assert r.status_code == 200
            hold.wait_seen()  # the first turn is running (waiting for the model)
            second = http.post(f"/api/sessions/{sid}/messages", json={"content": "again"})
            assert "running a turn" in _error(second, 409)
            hold.release()
            r.read()
    assert send(http, sid, "now it is free")[-1][1] == "done"


def test_thinking_and_effort_reach_the_model(http: httpx.Client, agent: str, fake_model) -> None:  # type: ignore[no-untyped-def]
    sid = new_session(http, agent, thinking={"type": "enabled", "budgetTokens": 2048})
    frames = send(http, sid, "think hard", effort="high")
    assert frames[-1][1] == "done"
    body = fake_model.message_requests[-1]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert "high" in json.dumps({k: v for k, v in body.items() if k != "messages"})


def test_unimplemented_fields_are_refused_by_name(http: httpx.Client, agent: str) -> None:
    # credentialId is implemented: an unknown one is a 400 that names it
    r = http.post("/api/sessions", json={"agent": agent, "credentialId": "cred-1"})
    assert "credential cred-1 does not exist" in _error(r, 400)
