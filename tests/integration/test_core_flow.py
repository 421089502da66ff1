"""The core product over real HTTP: Ash's own client, tools in the sandbox, SSE."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from ash_sdk.ash_client import AshClient
from ash_sdk.streaming import DoneEvent, MessageEvent, SessionStartEvent, TurnCompleteEvent

from tests.integration.conftest import API_KEY, MODEL_KEY
from tests.integration.sse import new_session, send

pytestmark = pytest.mark.ray


def test_ash_python_sdk_works_unchanged(server: str, agent_dir: Path) -> None:
    client = AshClient(server, token=API_KEY)
    agent = client.deploy_agent("sdk-agent", str(agent_dir))
    assert agent.name == "sdk-agent" and agent.version >= 1
    session = client.create_session("sdk-agent")
    assert session.status == "active"

    events = list(client.send_message_stream(session.id, "hello there"))
    kinds = [type(e) for e in events]
    assert kinds[0] is SessionStartEvent and kinds[-1] is DoneEvent
    complete = [e for e in events if isinstance(e, TurnCompleteEvent)]
    assert complete and complete[0].result == "echo: hello there"
    assistant = [e for e in events if isinstance(e, MessageEvent) and e.data["type"] == "assistant"]
    assert assistant[0].data["message"]["content"][0]["text"] == "echo: hello there"

    assert client.get_session(session.id).id == session.id
    assert session.id in {s.id for s in client.list_sessions(agent="sdk-agent")}
    ended = client.end_session(session.id)
    assert ended.status == "ended"


def test_events_are_numbered_and_ordered(http: httpx.Client, agent: str) -> None:
    sid = new_session(http, agent)
    frames = send(http, sid, "numbered please", includePartialMessages=True)
    seqs = [f[0] for f in frames]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    types = [f[1] for f in frames]
    assert types[0] == "session_start" and types[-1] == "done"
    assert "text_delta" in types
    assert types.index("turn_complete") < types.index("done")
    result = next(f[2] for f in frames if f[1] == "message" and f[2]["type"] == "result")
    assert result["subtype"] == "success" and result["usage"]["output_tokens"] > 0


def test_bash_runs_in_the_sandbox_and_streams_its_result(http: httpx.Client, agent: str) -> None:
    sid = new_session(http, agent)
    cmd = {"command": "echo from-sandbox; pwd; env"}
    frames = send(http, sid, f"TOOL Bash {json.dumps(cmd)}")
    uses = [f[2] for f in frames if f[1] == "tool_use"]
    results = [f[2] for f in frames if f[1] == "tool_result"]
    assert uses and uses[0]["name"] == "Bash"
    out = json.dumps(results[0]["content"])
    assert "from-sandbox" in out and sid in out  # ran inside the session workspace
    assert MODEL_KEY not in out and API_KEY not in out and "ANTHROPIC" not in out
    assert results[0]["is_error"] is False


def test_writes_outside_the_workspace_are_refused(http: httpx.Client, agent: str) -> None:
    sid = new_session(http, agent)
    target = "/etc/ash-escape-test"
    write = {"file_path": target, "content": "x"}
    frames = send(http, sid, f"TOOL Write {json.dumps(write)}")
    result = next(f[2] for f in frames if f[1] == "tool_result")
    assert result["is_error"] is True
    assert not Path(target).exists()
    escape = {"command": f"echo x > {target}; echo x > ../other-session-file"}
    send(http, sid, f"TOOL Bash {json.dumps(escape)}")
    assert not Path(target).exists()


def test_agents_are_versioned_and_listed(http: httpx.Client, agent_dir: Path) -> None:
    first = http.post("/api/agents", json={"name": "versioned", "path": str(agent_dir)})
    again = http.post("/api/agents", json={"name": "versioned", "path": str(agent_dir)})
    assert first.status_code == again.status_code == 201
    a, b = first.json()["agent"], again.json()["agent"]
    assert b["version"] == a["version"] + 1 and a["id"] == b["id"]
    names = {x["name"] for x in http.get("/api/agents").json()["agents"]}
    assert "versioned" in names
    assert http.delete("/api/agents/versioned").json() == {"ok": True}
    assert http.get("/api/agents/versioned").status_code == 404


def test_messages_are_whole_sdk_messages(http: httpx.Client, agent: str) -> None:
    sid = new_session(http, agent)
    send(http, sid, "first")
    send(http, sid, "second")
    msgs = http.get(f"/api/sessions/{sid}/messages").json()["messages"]
    sdk = [json.loads(m["content"]) for m in msgs]
    assert [m["type"] for m in sdk] == ["user", "assistant", "result"] * 2
    assert [m["role"] for m in msgs] == ["user", "assistant", "assistant"] * 2
    assert sdk[3]["message"] == {"role": "user", "content": "second"}
    assert sdk[4]["message"]["content"] == [{"type": "text", "text": "echo: second"}]
    seqs = [m["sequence"] for m in msgs]
    assert seqs == sorted(set(seqs))
    after = http.get(f"/api/sessions/{sid}/messages", params={"after": seqs[2]}).json()
    assert [m["sequence"] for m in after["messages"]] == seqs[3:]
