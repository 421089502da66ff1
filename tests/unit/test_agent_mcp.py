"""MCP servers in the agent loop: a stdio server in the sandbox and an HTTP one."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from ash_ray.agent import AgentEvent, AgentLoop, TurnOptions, load_agent
from ash_ray.config import load_settings
from ash_ray.sandbox import create_sandbox
from ash_ray.testing.fake_anthropic import FakeAnthropic, tool_use
from ash_ray.testing.ports import free_port
from tests.helpers import PYTHON_DIRS

SERVER = Path(__file__).with_name("mcp_demo_server.py")


@pytest.fixture
async def make_loop(tmp_path: Path, client: anthropic.AsyncAnthropic) -> AsyncIterator[Any]:
    loops: list[AgentLoop] = []

    def _make(mcp: dict[str, Any] | None = None, **over: Any) -> AgentLoop:
        agent = tmp_path / "agent"
        agent.mkdir(exist_ok=True)
        (agent / "CLAUDE.md").write_text("You use tools.")
        if mcp is not None:
            (agent / ".mcp.json").write_text(json.dumps({"mcpServers": mcp}))
        over.setdefault("mcp_startup_timeout_s", 20)
        over.setdefault("sandbox_extra_ro_paths", PYTHON_DIRS)
        config = load_settings(data_dir=tmp_path / "data", **over)
        ws = tmp_path / "data" / "sessions" / "s1"
        ws.mkdir(parents=True, exist_ok=True)
        # In a session the workspace is a copy of the agent: the server script is there.
        shutil.copy(SERVER, ws / "server.py")
        sandbox = create_sandbox(config, ws, extra_env={"DEMO_TOKEN": "from-session"})
        loop = AgentLoop(client, load_agent(agent), sandbox, config, session_id="s1")
        loops.append(loop)
        return loop

    yield _make
    for loop in loops:
        await loop.aclose()
        await loop.sandbox.close()


def stdio_server(**env: str) -> dict[str, Any]:
    return {"command": sys.executable, "args": ["server.py"], "env": env}


async def run(loop: AgentLoop, prompt: str, options: TurnOptions | None = None) -> list[AgentEvent]:
    return [e async for e in loop.run_turn([], prompt, options or TurnOptions(), asyncio.Event())]


def results(events: list[AgentEvent]) -> list[dict[str, Any]]:
    return [e.data for e in events if e.type == "tool_result"]


def status(events: list[AgentEvent]) -> list[dict[str, Any]]:
    return [e.data for e in events if e.type == "mcp_status"]


async def test_stdio_server_in_the_sandbox(make_loop: Any, fake: FakeAnthropic) -> None:
    loop = make_loop({"demo": stdio_server(DEMO_EXTRA="1")})
    fake.script(
        [tool_use("mcp__demo__echo", {"text": "hi"})],
        [tool_use("mcp__demo__token", {})],
        [tool_use("mcp__demo__boom", {})],
        "done",
    )
    events = await run(loop, "go")
    names = [t["name"] for t in fake.message_requests[0]["tools"]]
    assert {"mcp__demo__echo", "mcp__demo__token", "mcp__demo__boom"} <= set(names)
    states = status(events)
    assert states[0]["action"] == "configured" and states[0]["servers"][0]["name"] == "demo"
    assert states[1]["action"] == "connected" and states[1]["server"] == "demo"
    echo, token, boom = results(events)
    assert echo["content"] == [{"type": "text", "text": "echo:hi"}] and not echo["is_error"]
    # The sandbox's env (session extraEnv) reaches the server; the worker's secrets do not.
    assert token["content"][0]["text"] == "from-session|False"
    assert boom["is_error"]
    assert (
        loop.tools._mcp is not None and loop.tools._mcp.tools()[0].read_only
    )  # echo: readOnlyHint

    # Kept across turns: no new configured/connected events.
    fake.script([tool_use("mcp__demo__echo", {"text": "again"})], "ok")
    events = await run(loop, "again")
    assert status(events) == [] and results(events)[0]["content"][0]["text"] == "echo:again"


async def test_rules_and_plan_mode_apply_to_mcp_tools(make_loop: Any, fake: FakeAnthropic) -> None:
    loop = make_loop({"demo": stdio_server()})
    fake.script(
        [tool_use("mcp__demo__echo", {"text": "a"})], [tool_use("mcp__demo__token", {})], "p"
    )
    events = await run(loop, "plan", TurnOptions(permission_mode="plan"))
    echo, token = results(events)
    assert not echo["is_error"] and token["is_error"] and "plan mode" in token["content"]
    fake.script([tool_use("mcp__demo__echo", {"text": "a"})], "q")
    events = await run(loop, "x", TurnOptions(disallowed_tools=["mcp__demo__*"]))
    assert not any(t["name"].startswith("mcp__") for t in fake.message_requests[-2]["tools"])
    assert results(events)[0]["is_error"]
    fake.script("r")
    await run(loop, "x", TurnOptions(allowed_tools=["mcp__demo__echo", "Read"]))
    assert [t["name"] for t in fake.message_requests[-1]["tools"]] == ["Read", "mcp__demo__echo"]


async def test_failed_and_dying_servers_are_errors_not_failed_turns(
    make_loop: Any, fake: FakeAnthropic
) -> None:
    broken = {"command": "sh", "args": ["-c", "echo cannot start >&2; exit 1"]}
    loop = make_loop({"broken": broken, "demo": stdio_server()}, mcp_startup_timeout_s=10)
    fake.script(
        [tool_use("mcp__demo__die", {})], [tool_use("mcp__demo__echo", {"text": "x"})], "ok"
    )
    events = await run(loop, "go")
    failed = [s for s in status(events) if s.get("server") == "broken"]
    assert failed and failed[0]["action"] == "error"
    die, echo = results(events)
    assert die["is_error"] and echo["is_error"] and "not available" in echo["content"]
    assert any(s["action"] == "error" and s["server"] == "demo" for s in status(events))
    assert [e.data["subtype"] for e in events if e.data.get("type") == "result"] == ["success"]
    # The next turn starts the dead server again.
    fake.script([tool_use("mcp__demo__echo", {"text": "back"})], "ok")
    events = await run(loop, "again")
    assert results(events)[0]["content"][0]["text"] == "echo:back"


async def test_hanging_server_times_out(make_loop: Any, fake: FakeAnthropic) -> None:
    loop = make_loop({"slow": {"command": "sleep", "args": ["60"]}}, mcp_startup_timeout_s=1)
    fake.script("fine")
    started = time.monotonic()
    events = await run(loop, "go")
    assert time.monotonic() - started < 15
    (error,) = [s for s in status(events) if s["action"] == "error"]
    assert error["server"] == "slow" and "did not start" in error["error"]


def _serve(*args: str) -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    yield port
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def http_server() -> Iterator[str]:
    for port in _serve():
        yield f"http://127.0.0.1:{port}/mcp"


@pytest.fixture
def sse_server() -> Iterator[str]:
    for port in _serve("sse"):
        yield f"http://127.0.0.1:{port}/sse"


async def test_http_server_and_session_entry_wins(
    make_loop: Any, fake: FakeAnthropic, http_server: str
) -> None:
    loop = make_loop({"remote": {"type": "http", "url": "http://127.0.0.1:1/nothing"}})
    fake.script([tool_use("mcp__remote__echo", {"text": "over http"})], "ok")
    options = TurnOptions(mcp_servers={"remote": {"type": "http", "url": http_server}})
    events = await run(loop, "go", options)
    assert results(events)[0]["content"][0]["text"] == "echo:over http"
    assert status(events)[0]["servers"] == [
        {"name": "remote", "transport": "http", "url": http_server}
    ]


async def test_sse_server_and_image_results(
    make_loop: Any, fake: FakeAnthropic, sse_server: str
) -> None:
    loop = make_loop({"pics": {"type": "sse", "url": sse_server}})
    fake.script([tool_use("mcp__pics__picture", {})], "ok")
    events = await run(loop, "draw")
    (result,) = results(events)
    (block,) = result["content"]
    assert block["type"] == "image" and block["source"]["media_type"] == "image/png"
    assert block["source"]["data"].startswith("iVBOR")  # base64 of the PNG signature
    # The image went back to the model as an image block.
    sent = fake.message_requests[1]["messages"][-1]["content"][0]["content"][0]
    assert sent["type"] == "image"
