"""initialAgent over HTTP: the main thread runs as a subagent definition; unknown names 400."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.conftest import API_KEY
from tests.integration.sse import new_session, send

pytestmark = pytest.mark.ray

REVIEWER = (
    "---\nname: reviewer\ndescription: Reviews code\ntools: Read, Grep\nmodel: haiku\n---\n"
    "You are the reviewer.\n"
)
WRITER = {"description": "Writes", "prompt": "You write.", "effort": "low"}


@pytest.fixture(scope="module")
def reviewing(http_module: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("agents") / "reviewing"
    (root / ".claude" / "agents").mkdir(parents=True)
    (root / "CLAUDE.md").write_text("You are the main agent.\n")
    (root / ".claude" / "agents" / "reviewer.md").write_text(REVIEWER)
    r = http_module.post("/api/agents", json={"name": "reviewing", "path": str(root)})
    assert r.status_code == 201, r.text
    return "reviewing"


@pytest.fixture(scope="module")
def http_module(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60
    ) as client:
        yield client


def test_initial_agent_over_http(http: httpx.Client, reviewing: str, fake_model: Any) -> None:
    r = http.post("/api/sessions", json={"agent": reviewing, "initialAgent": "nobody"})
    assert r.status_code == 400 and "nobody" in r.text

    sid = new_session(http, reviewing, initialAgent="reviewer")
    fake_model.reset()
    assert send(http, sid, "review it")[-1][1] == "done"
    request = fake_model.message_requests[0]
    assert request["system"][0]["text"].startswith("You are the reviewer.")
    assert request["model"] == "claude-haiku-4-5"
    assert [t["name"] for t in request["tools"]] == ["Read", "Grep"]

    r = http.patch(f"/api/sessions/{sid}/config", json={"initialAgent": "ghost"})
    assert r.status_code == 400 and "ghost" in r.text
    r = http.patch(
        f"/api/sessions/{sid}/config",
        json={"initialAgent": "writer", "subagents": {"writer": WRITER}},
    )
    assert r.status_code == 200, r.text
    fake_model.reset()
    assert send(http, sid, "write it")[-1][1] == "done"
    request = fake_model.message_requests[0]
    assert request["system"][0]["text"].startswith("You write.")
    assert request["output_config"] == {"effort": "low"}
    # Dropping the session's subagents would leave the initialAgent dangling: refused.
    r = http.patch(f"/api/sessions/{sid}/config", json={"subagents": None})
    assert r.status_code == 400 and "writer" in r.text
