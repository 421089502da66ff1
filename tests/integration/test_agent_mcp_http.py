"""Claude Code agent folders over HTTP: MCP servers (stdio, HTTP), hooks, subagents."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ash_ray.testing.ports import free_port
from tests.integration.conftest import API_KEY
from tests.integration.sse import new_session, send

pytestmark = pytest.mark.ray

DEMO = Path(__file__).parents[1] / "unit" / "mcp_demo_server.py"
HOOK = (
    "import json,sys; d=json.load(sys.stdin); cmd=d['tool_input'].get('command','');"
    " print('hook says no: ' + cmd, file=sys.stderr); sys.exit(2 if cmd.startswith('rm') else 0)"
)


@pytest.fixture(scope="module")
def http_mcp() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(DEMO), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def cc_agent(server: str, tmp_path_factory: pytest.TempPathFactory, http_mcp: str) -> str:
    root = tmp_path_factory.mktemp("cc") / "claude-code-agent"
    (root / ".claude" / "agents").mkdir(parents=True)
    (root / "CLAUDE.md").write_text("You are a Claude Code agent.\n")
    (root / "notes.txt").write_text("keep me\n")
    shutil.copy(DEMO, root / "server.py")
    (root / "hook.py").write_text(HOOK)
    servers = {
        "demo": {"command": sys.executable, "args": ["server.py"]},
        "remote": {"type": "http", "url": http_mcp},
    }
    (root / ".mcp.json").write_text(json.dumps({"mcpServers": servers}))
    hooks = {
        "PreToolUse": [
            {"matcher": "Bash", "hooks": [{"type": "command", "command": "python3 hook.py"}]}
        ]
    }
    (root / ".claude" / "settings.json").write_text(json.dumps({"hooks": hooks}))
    (root / ".claude" / "agents" / "scout.md").write_text(
        "---\nname: scout\ndescription: Reads files\ntools: Read\n---\nYou are the scout.\n"
    )
    r = httpx.post(
        server + "/api/agents",
        json={"name": "cc-agent", "path": str(root)},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=60,
    )
    assert r.status_code == 201, r.text
    return "cc-agent"


def test_mcp_stdio_and_http_tools_over_http(http: httpx.Client, cc_agent: str) -> None:
    sid = new_session(http, cc_agent)
    frames = send(http, sid, 'TOOL mcp__demo__echo {"text": "stdio"}')
    statuses = [f[2] for f in frames if f[1] == "mcp_status"]
    assert statuses[0]["action"] == "configured"
    assert {s["server"] for s in statuses if s["action"] == "connected"} == {"demo", "remote"}
    (result,) = [f[2] for f in frames if f[1] == "tool_result"]
    assert result["content"] == [{"type": "text", "text": "echo:stdio"}]
    frames = send(http, sid, 'TOOL mcp__remote__echo {"text": "http"}')
    assert not [f for f in frames if f[1] == "mcp_status"]  # kept from the first turn
    (result,) = [f[2] for f in frames if f[1] == "tool_result"]
    assert result["content"] == [{"type": "text", "text": "echo:http"}]


def test_hook_blocks_a_command(http: httpx.Client, cc_agent: str) -> None:
    sid = new_session(http, cc_agent)
    frames = send(http, sid, 'TOOL Bash {"command": "rm notes.txt"}')
    (result,) = [f[2] for f in frames if f[1] == "tool_result"]
    assert result["is_error"] and "hook says no: rm notes.txt" in result["content"]
    frames = send(http, sid, 'TOOL Bash {"command": "cat notes.txt"}')
    (result,) = [f[2] for f in frames if f[1] == "tool_result"]
    assert not result["is_error"] and "keep me" in result["content"]


def test_subagent_turn(http: httpx.Client, cc_agent: str) -> None:
    sid = new_session(http, cc_agent)
    task = {"description": "scout", "prompt": "look around", "subagent_type": "scout"}
    frames = send(http, sid, f"TOOL Task {json.dumps(task)}")
    (use,) = [f[2] for f in frames if f[1] == "tool_use" and f[2]["name"] == "Task"]
    nested = [f[2] for f in frames if f[1] == "message" and f[2].get("parent_tool_use_id")]
    assert nested and all(m["parent_tool_use_id"] == use["id"] for m in nested)
    assert nested[0]["message"]["content"] == "look around"  # the subagent's prompt
    assert nested[1]["message"]["content"][0]["text"] == "echo: look around"
    task_result = next(
        f[2] for f in frames if f[1] == "tool_result" and f[2]["tool_use_id"] == use["id"]
    )
    assert task_result["content"] == "echo: look around"
    (result,) = [f[2] for f in frames if f[1] == "message" and f[2]["type"] == "result"]
    own = [
        f[2]["message"]["usage"]["output_tokens"]
        for f in frames
        if f[1] == "message" and f[2]["type"] == "assistant"
    ]
    assert result["usage"]["output_tokens"] == sum(own)  # the subagent's usage counts


def test_todo_and_mcp_status_reach_the_stream_and_the_timeline(
    http: httpx.Client, cc_agent: str
) -> None:
    sid = new_session(http, cc_agent)
    todos = [{"content": "ship it", "status": "in_progress", "activeForm": "Shipping it"}]
    frames = send(http, sid, f"TOOL TodoWrite {json.dumps({'todos': todos})}")
    assert [f[2]["todos"] for f in frames if f[1] == "todo"] == [todos]
    assert any(f[1] == "mcp_status" for f in frames)
    events = http.get(f"/api/sessions/{sid}/events").json()["events"]
    kinds = [e["type"] for e in events]
    assert "mcp_status" in kinds
    starts = [json.loads(e["data"]) for e in events if e["type"] == "tool_start"]
    assert [s["input"]["todos"] for s in starts if s["toolName"] == "TodoWrite"] == [todos]
