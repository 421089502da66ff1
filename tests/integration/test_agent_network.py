"""An agent can cut its own tools' network; by default a sandbox has egress (slirp4netns)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from ash_ray.sandbox import describe_isolation
from tests.integration.conftest import API_KEY

pytestmark = [pytest.mark.ray, pytest.mark.sandbox]


def _interfaces(http: httpx.Client, agent: str) -> str:
    sid = http.post("/api/sessions", json={"agent": agent}).json()["session"]["id"]
    try:
        r = http.post(f"/api/sessions/{sid}/exec", json={"command": "cat /proc/net/dev"})
        assert r.status_code == 200, r.text
        return str(r.json()["stdout"])
    finally:
        http.delete(f"/api/sessions/{sid}")


def test_agent_settings_cut_the_network(
    http: httpx.Client, agent: str, tmp_path: Path, settings  # type: ignore[no-untyped-def]
) -> None:
    if describe_isolation(settings)["network"] != "isolated-egress":
        pytest.fail(f"this machine gives sandboxes no egress: {describe_isolation(settings)}")
    offline = tmp_path / "offline"
    (offline / ".claude").mkdir(parents=True)
    (offline / "CLAUDE.md").write_text("You work without a network.")
    env = {"env": {"ASH_SANDBOX_NETWORK": "false"}}
    (offline / ".claude" / "settings.json").write_text(json.dumps(env))
    r = http.post(
        "/api/agents", json={"name": "offline", "path": str(offline)},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert r.status_code == 201, r.text

    assert "tap0" in _interfaces(http, agent)  # the default: egress through slirp4netns
    cut = _interfaces(http, "offline")
    assert "lo:" in cut and "tap0" not in cut  # loopback only
