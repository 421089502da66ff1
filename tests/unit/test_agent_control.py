"""New tools, permission modes, hooks and subagents, driven by the fake model."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anthropic
import pytest

from ash_ray.agent import AgentEvent, AgentLoop, TurnOptions, load_agent
from ash_ray.config import load_settings
from ash_ray.sandbox import create_sandbox
from ash_ray.testing.fake_anthropic import FakeAnthropic, tool_use


def agent_dir(
    root: Path, settings: dict[str, Any] | None = None, files: dict[str, str] | None = None
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "CLAUDE.md").write_text("You are a test agent.")
    (root / ".claude").mkdir(exist_ok=True)
    if settings is not None:
        (root / ".claude" / "settings.json").write_text(json.dumps(settings))
    for name, text in (files or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def make_loop(tmp_path: Path, client: anthropic.AsyncAnthropic) -> Any:
    def _make(
        settings: dict[str, Any] | None = None, files: dict[str, str] | None = None, **over: Any
    ) -> AgentLoop:
        agent = agent_dir(tmp_path / "agent", settings, files)
        config = load_settings(data_dir=tmp_path / "data", **over)
        sandbox = create_sandbox(config, tmp_path / "data" / "sessions" / "s1")
        return AgentLoop(client, load_agent(agent), sandbox, config, session_id="s1")

    return _make


async def run(loop: AgentLoop, prompt: str, options: TurnOptions | None = None) -> list[AgentEvent]:
    return [e async for e in loop.run_turn([], prompt, options or TurnOptions(), asyncio.Event())]


def results(events: list[AgentEvent]) -> list[dict[str, Any]]:
    return [e.data for e in events if e.type == "tool_result"]


def final(events: list[AgentEvent]) -> dict[str, Any]:
    return [e.data for e in events if e.type == "message" and e.data["type"] == "result"][-1]


async def test_multiedit_applies_all_or_nothing(make_loop: Any, fake: FakeAnthropic) -> None:
    loop = make_loop()
    target = loop.sandbox.workspace / "a.txt"
    target.write_text("one two three")
    good = {
        "file_path": "a.txt",
        "edits": [
            {"old_string": "one", "new_string": "1"},
            {"old_string": "two", "new_string": "2"},
        ],
    }
    bad = {
        "file_path": "a.txt",
        "edits": [
            {"old_string": "three", "new_string": "3"},
            {"old_string": "zzz", "new_string": "?"},
        ],
    }
    fake.script([tool_use("MultiEdit", good)], [tool_use("MultiEdit", bad)], "done")
    events = await run(loop, "edit")
    first, second = results(events)
    assert not first["is_error"] and second["is_error"] and "edit 2" in second["content"]
    assert target.read_text() == "1 2 three"


async def test_notebook_edit_replaces_inserts_and_deletes(
    make_loop: Any, fake: FakeAnthropic
) -> None:
    loop = make_loop()
    nb = {
        "cells": [
            {
                "cell_type": "code",
                "id": "c1",
                "source": "x=1",
                "metadata": {},
                "outputs": [{"x": 1}],
                "execution_count": 3,
            }
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = loop.sandbox.workspace / "n.ipynb"
    path.write_text(json.dumps(nb))
    fake.script(
        [
            tool_use(
                "NotebookEdit", {"notebook_path": "n.ipynb", "cell_id": "c1", "new_source": "x=2"}
            )
        ],
        [
            tool_use(
                "NotebookEdit",
                {
                    "notebook_path": "n.ipynb",
                    "cell_id": "c1",
                    "new_source": "# T",
                    "cell_type": "markdown",
                    "edit_mode": "insert",
                },
            )
        ],
        [
            tool_use(
                "NotebookEdit",
                {
                    "notebook_path": "n.ipynb",
                    "cell_id": "c9",
                    "new_source": "",
                    "edit_mode": "delete",
                },
            )
        ],
        "ok",
    )
    events = await run(loop, "nb")
    assert [r["is_error"] for r in results(events)] == [False, False, True]
    cells = json.loads(path.read_text())["cells"]
    assert [c["source"] for c in cells] == ["x=2", "# T"]
    assert cells[0]["outputs"] == [] and cells[0]["execution_count"] is None


async def test_todowrite_keeps_the_list_and_emits_a_todo_event(
    make_loop: Any, fake: FakeAnthropic
) -> None:
    loop = make_loop()
    todos = [{"content": "write tests", "status": "in_progress", "activeForm": "Writing tests"}]
    fake.script(
        [tool_use("TodoWrite", {"todos": todos})],
        [tool_use("TodoWrite", {"todos": [{"content": "x", "status": "bogus"}]})],
        "ok",
    )
    events = await run(loop, "plan it")
    todo_events = [e.data for e in events if e.type == "todo"]
    assert todo_events == [{"todos": todos, "session_id": "s1"}]
    assert loop.tools.todos == todos
    assert [r["is_error"] for r in results(events)] == [False, True]


async def test_plan_mode_refuses_changes_but_reads(make_loop: Any, fake: FakeAnthropic) -> None:
    loop = make_loop()
    (loop.sandbox.workspace / "r.txt").write_text("hello")
    fake.script(
        [tool_use("Bash", {"command": "touch bashed"})],
        [tool_use("Write", {"file_path": "w.txt", "content": "x"})],
        [tool_use("Read", {"file_path": "r.txt"})],
        "planned",
    )
    events = await run(loop, "p", TurnOptions(permission_mode="plan"))
    bash, write, read = results(events)
    assert bash["is_error"] and "plan mode" in bash["content"]
    assert write["is_error"] and not (loop.sandbox.workspace / "w.txt").exists()
    assert not read["is_error"] and "hello" in read["content"]
    assert not (loop.sandbox.workspace / "bashed").exists()


async def test_bypass_and_accept_edits_modes(make_loop: Any, fake: FakeAnthropic) -> None:
    loop = make_loop({"permissions": {"deny": ["Bash(rm:*)"], "allow": ["Edit(docs/**)"]}})
    ws = loop.sandbox.workspace
    (ws / "victim").write_text("x")
    fake.script([tool_use("Bash", {"command": "rm victim"})], "a")
    assert results(await run(loop, "x"))[0]["is_error"] and (ws / "victim").exists()
    fake.script([tool_use("Bash", {"command": "rm victim"})], "b")
    assert not results(await run(loop, "x", TurnOptions(permission_mode="bypassPermissions")))[0][
        "is_error"
    ]
    assert not (ws / "victim").exists()
    fake.script([tool_use("Write", {"file_path": "src.txt", "content": "1"})], "c")
    assert results(await run(loop, "x"))[0]["is_error"]
    fake.script([tool_use("Write", {"file_path": "src.txt", "content": "1"})], "d")
    assert not results(await run(loop, "x", TurnOptions(permission_mode="acceptEdits")))[0][
        "is_error"
    ]
    assert (ws / "src.txt").read_text() == "1"


def _hooks(event: str, command: str, matcher: str = "") -> dict[str, Any]:
    return {
        "hooks": {event: [{"matcher": matcher, "hooks": [{"type": "command", "command": command}]}]}
    }


async def test_pre_tool_use_hook_blocks_with_exit_2(make_loop: Any, fake: FakeAnthropic) -> None:
    script = (
        "import json,sys; d=json.load(sys.stdin); open('seen.json','w').write(json.dumps(d));"
        " print('no rm here', file=sys.stderr);"
        " sys.exit(2 if 'rm' in d['tool_input']['command'] else 0)"
    )
    loop = make_loop(
        _hooks("PreToolUse", "python3 .claude/check.py", "Bash"), files={".claude/check.py": script}
    )
    ws = loop.sandbox.workspace
    # The session workspace is a copy of the agent in real sessions; copy the hook here.
    (ws / ".claude").mkdir(parents=True, exist_ok=True)
    (ws / ".claude" / "check.py").write_text(script)
    (ws / "keep").write_text("x")
    fake.script(
        [tool_use("Bash", {"command": "rm keep"})],
        [tool_use("Bash", {"command": "echo fine"})],
        "ok",
    )
    events = await run(loop, "go")
    blocked, allowed = results(events)
    assert blocked["is_error"] and "no rm here" in blocked["content"] and (ws / "keep").exists()
    assert not allowed["is_error"] and "fine" in allowed["content"]
    seen = json.loads((ws / "seen.json").read_text())
    assert seen["hook_event_name"] == "PreToolUse" and seen["tool_name"] == "Bash"
    assert seen["session_id"] == "s1" and seen["cwd"] == str(ws)


async def test_hook_json_deny_and_matcher_skip(make_loop: Any, fake: FakeAnthropic) -> None:
    deny = json.dumps(
        {
            "hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": "deny",
                "permissionDecisionReason": "files are frozen",
            }
        }
    )
    loop = make_loop(_hooks("PreToolUse", f"echo '{deny}'", "Write|Edit"))
    fake.script(
        [tool_use("Write", {"file_path": "f.txt", "content": "1"})],
        [tool_use("Bash", {"command": "echo hi"})],
        "ok",
    )
    write, bash = results(await run(loop, "go"))
    assert write["is_error"] and "files are frozen" in write["content"]
    assert not bash["is_error"]


async def test_user_prompt_submit_and_stop_hooks(
    make_loop: Any, fake: FakeAnthropic, tmp_path: Path
) -> None:
    settings = {
        "hooks": {
            "UserPromptSubmit": [
                {
                    "hooks": [
                        {
                            "type": "command",
                            "command": "grep -q secret && { echo 'no secrets' >&2; exit 2; }"
                            " || echo 'today is Tuesday'",
                        }
                    ]
                }
            ],
            "Stop": [
                {
                    "hooks": [
                        {
                            "type": "command",
                            "command": 'python3 -c "import json,sys; d=json.load(sys.stdin);'
                            " print(json.dumps({} if d['stop_hook_active'] else"
                            " {'decision': 'block', 'reason': 'run the tests'}))\"",
                        }
                    ]
                }
            ],
        }
    }
    loop = make_loop(settings)
    fake.script("first stop", "second stop")
    events = await run(loop, "hello")
    assert "today is Tuesday" in json.dumps(fake.message_requests[0]["messages"])
    assert "run the tests" in json.dumps(fake.message_requests[1]["messages"])
    assert final(events)["result"] == "second stop" and len(fake.message_requests) == 2
    blocked = await run(loop, "my secret")
    assert final(blocked)["is_error"] and "no secrets" in final(blocked)["result"]
    assert len(fake.message_requests) == 2


async def test_task_runs_a_subagent_without_the_parent_conversation(
    make_loop: Any, fake: FakeAnthropic
) -> None:
    sub = (
        "---\nname: researcher\ndescription: Looks things up\ntools: Read, Grep\n"
        "model: haiku\n---\nYou are the researcher.\n"
    )
    loop = make_loop(files={".claude/agents/researcher.md": sub})
    fake.script(
        [
            tool_use(
                "Task",
                {"description": "look", "prompt": "find the answer", "subagent_type": "researcher"},
                id="task1",
            )
        ],
        "the answer is 42",
        "parent done",
    )
    events = await run(loop, "PARENT-ONLY context")
    sub_request = fake.message_requests[1]
    assert sub_request["system"][0]["text"].startswith("You are the researcher.")
    assert sub_request["model"] == "claude-haiku-4-5"
    assert "PARENT-ONLY" not in json.dumps(sub_request["messages"])
    assert [t["name"] for t in sub_request["tools"]] == ["Read", "Grep"]
    (task_result,) = [r for r in results(events) if r["tool_use_id"] == "task1"]
    assert task_result["content"] == "the answer is 42"
    nested = [
        e.data
        for e in events
        if e.type == "message" and e.data.get("parent_tool_use_id") == "task1"
    ]
    # The subagent's prompt, then its reply, both tagged with the Task call's id.
    assert [m["type"] for m in nested[:2]] == ["user", "assistant"]
    assert nested[0]["message"]["content"] == "find the answer"
    usage = final(events)["usage"]
    assert usage["output_tokens"] >= sum(
        e.data["message"]["usage"]["output_tokens"]
        for e in events
        if e.type == "message" and e.data["type"] == "assistant"
    )
    session_subs = TurnOptions(
        subagents={
            "writer": {
                "description": "Writes",
                "prompt": "You write.",
                "disallowed_tools": ["Bash"],
            }
        }
    )
    fake.script(
        [tool_use("Task", {"description": "w", "prompt": "p", "subagent_type": "writer"})],
        "written",
        "ok",
    )
    events = await run(loop, "again", session_subs)
    assert fake.message_requests[-2]["system"][0]["text"].startswith("You write.")
    writer_tools = [t["name"] for t in fake.message_requests[-2]["tools"]]
    assert "Bash" not in writer_tools and "Task" not in writer_tools and "Read" in writer_tools


class _Pages(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/page")
            self.end_headers()
            return
        body = (
            b"<html><body><h1>Title</h1><p>Some <b>bold</b> text</p>"
            b"<script>x()</script></body></html>"
        )
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def pages() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_webfetch_markdown_rules_and_private_refusal(
    make_loop: Any, fake: FakeAnthropic, pages: str
) -> None:
    loop = make_loop(
        {"permissions": {"allow": ["WebFetch(domain:127.0.0.1)"]}}, webfetch_allow_private=True
    )
    fake.script(
        [tool_use("WebFetch", {"url": f"{pages}/redirect", "prompt": "title"})],
        [tool_use("WebFetch", {"url": "http://localhost:1/x", "prompt": "p"})],
        "ok",
    )
    page, other = results(await run(loop, "fetch"))
    assert not page["is_error"] and "# Title" in page["content"] and "**bold**" in page["content"]
    assert "x()" not in page["content"]
    assert other["is_error"] and "WebFetch(domain:127.0.0.1)" in other["content"]

    strict = make_loop()
    fake.script([tool_use("WebFetch", {"url": f"{pages}/page", "prompt": "p"})], "ok")
    (refused,) = results(await run(strict, "fetch"))
    assert (
        refused["is_error"]
        and "127.0.0.1" in refused["content"]
        and "refuses" in refused["content"]
    )


async def test_webfetch_refused_when_network_cut(
    tmp_path: Path, client: anthropic.AsyncAnthropic, fake: FakeAnthropic, pages: str
) -> None:
    config = load_settings(data_dir=tmp_path / "data", webfetch_allow_private=True)
    try:
        sandbox = create_sandbox(config, tmp_path / "ws", network=False)
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"cannot cut the network here: {exc}")
    loop = AgentLoop(
        client, load_agent(agent_dir(tmp_path / "agent")), sandbox, config, session_id="s1"
    )
    fake.script([tool_use("WebFetch", {"url": f"{pages}/page", "prompt": "p"})], "ok")
    (refused,) = results(await run(loop, "fetch"))
    assert refused["is_error"] and "network is cut" in refused["content"]
    assert "web_search" not in [t["name"] for t in fake.message_requests[0]["tools"]]


async def test_websearch_is_the_server_tool_and_can_be_denied(
    make_loop: Any, fake: FakeAnthropic
) -> None:
    loop = make_loop()
    fake.script("a", "b")
    await run(loop, "x")
    tools = fake.message_requests[0]["tools"]
    (search,) = [t for t in tools if t["name"] == "web_search"]
    assert search["type"] == "web_search_20250305" and search["max_uses"] == 5
    await run(loop, "x", TurnOptions(disallowed_tools=["WebSearch"]))
    assert "web_search" not in [t["name"] for t in fake.message_requests[1]["tools"]]


async def test_web_search_blocks_stream_through_and_persist(
    make_loop: Any, fake: FakeAnthropic
) -> None:
    loop = make_loop()
    search = {
        "type": "server_tool_use",
        "id": "srvtoolu_1",
        "name": "web_search",
        "input": {"query": "ash ray"},
    }
    found = {
        "type": "web_search_tool_result",
        "tool_use_id": "srvtoolu_1",
        "content": [
            {
                "type": "web_search_result",
                "url": "https://example.com/",
                "title": "Example",
                "encrypted_content": "opaque",
            }
        ],
    }
    fake.script([search, found, {"type": "text", "text": "It is a project."}], "second")
    conversation: list[dict[str, Any]] = []
    events = [
        e async for e in loop.run_turn(conversation, "search", TurnOptions(), asyncio.Event())
    ]
    (assistant,) = [e.data for e in events if e.type == "message" and e.data["type"] == "assistant"]
    kinds = [b["type"] for b in assistant["message"]["content"]]
    assert kinds == ["server_tool_use", "web_search_tool_result", "text"]
    assert not results(events)  # the API ran the search: nothing for the loop to run
    async for _ in loop.run_turn(conversation, "more", TurnOptions(), asyncio.Event()):
        pass
    sent = fake.message_requests[1]["messages"][1]["content"]
    assert sent[0] == search and sent[1]["content"][0]["url"] == "https://example.com/"


async def test_a_hook_that_hangs_is_cut_and_does_not_block(
    make_loop: Any, fake: FakeAnthropic
) -> None:
    settings = {
        "hooks": {
            "PreToolUse": [{"hooks": [{"type": "command", "command": "sleep 30", "timeout": 1}]}]
        }
    }
    loop = make_loop(settings)
    fake.script([tool_use("Bash", {"command": "echo ran"})], "ok")
    (result,) = results(await run(loop, "go"))
    assert not result["is_error"] and "ran" in result["content"]


async def test_subagent_events_stream_while_the_task_runs(
    make_loop: Any, fake: FakeAnthropic
) -> None:
    loop = make_loop(files={".claude/agents/waiter.md": "---\nname: waiter\n---\nYou wait.\n"})
    ws = loop.sandbox.workspace
    wait = "for i in $(seq 100); do test -f go && break; sleep 0.1; done; cat go"
    fake.script(
        [tool_use("Task", {"description": "w", "prompt": "wait", "subagent_type": "waiter"})],
        [tool_use("Bash", {"command": wait}, id="inner")],
        "waited",
        "done",
    )
    seen_before_release = False
    async for event in loop.run_turn([], "go", TurnOptions(), asyncio.Event()):
        if event.type == "message" and event.data.get("parent_tool_use_id"):
            if not (ws / "go").exists():
                # The subagent's Bash polls for this file: only a live event releases it.
                seen_before_release = True
                (ws / "go").write_text("released")
        if event.type == "tool_result" and event.data["tool_use_id"] == "inner":
            assert event.data["content"] == "released"
    assert seen_before_release
