"""initialAgent (the main thread as a subagent), subagent options, and the todo list
across a cold resume, driven by the fake model."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import anthropic
import pytest

from ash_ray.agent import AgentEvent, AgentLoop, TurnOptions, load_agent
from ash_ray.agent.subagents import require_initial_agent
from ash_ray.config import load_settings
from ash_ray.errors import InvalidInput
from ash_ray.sandbox import create_sandbox
from ash_ray.testing.fake_anthropic import FakeAnthropic, tool_use

REVIEWER = (
    "---\nname: reviewer\ndescription: Reviews code\ntools: Read, Grep\nmodel: haiku\n---\n"
    "You are the reviewer. Never write files.\n"
)
WRITER = {"description": "Writes", "prompt": "You write.", "effort": "low",
          "thinking": {"type": "enabled", "budget_tokens": 2048}}


@pytest.fixture
def make_loop(tmp_path: Path, client: anthropic.AsyncAnthropic) -> Any:
    agent = tmp_path / "agent"
    (agent / ".claude" / "agents").mkdir(parents=True)
    (agent / "CLAUDE.md").write_text("You are the main agent (CLAUDE.md).")
    (agent / ".claude" / "agents" / "reviewer.md").write_text(REVIEWER)

    def _make(**over: Any) -> AgentLoop:
        config = load_settings(data_dir=tmp_path / "data", **over)
        sandbox = create_sandbox(config, tmp_path / "data" / "sessions" / "s1")
        return AgentLoop(client, load_agent(agent), sandbox, config, session_id="s1")

    return _make


async def run(
    loop: AgentLoop, prompt: str, options: TurnOptions, history: list[dict[str, Any]] | None = None
) -> list[AgentEvent]:
    conversation = [] if history is None else history
    return [e async for e in loop.run_turn(conversation, prompt, options, asyncio.Event())]


def final(events: list[AgentEvent]) -> dict[str, Any]:
    return [e.data for e in events if e.type == "message" and e.data["type"] == "result"][-1]


def tool_names(request: dict[str, Any]) -> list[str]:
    return [t["name"] for t in request.get("tools", [])]


async def test_main_thread_runs_as_a_folder_subagent(make_loop: Any, fake: FakeAnthropic) -> None:
    loop = make_loop()
    fake.script("reviewed")
    events = await run(loop, "review this", TurnOptions(initial_agent="reviewer"))
    assert final(events)["result"] == "reviewed"
    request = fake.message_requests[-1]
    system = request["system"][0]["text"]
    assert system.startswith("You are the reviewer.") and "CLAUDE.md" not in system
    assert request["model"] == "claude-haiku-4-5"
    assert tool_names(request) == ["Read", "Grep"]  # its tools only: no Write, no Bash, no Task


async def test_session_fields_win_and_the_definition_fills_the_rest(
    make_loop: Any, fake: FakeAnthropic
) -> None:
    loop = make_loop()
    fake.script("ok", "ok")
    options = TurnOptions(
        initial_agent="writer",
        subagents={"writer": WRITER},
        allowed_tools=["Read", "Bash(git:*)"],
    )
    await run(loop, "write", options)
    request = fake.message_requests[-1]
    assert request["system"][0]["text"].startswith("You write.")
    assert request["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert request["output_config"] == {"effort": "low"}
    assert "Read" in tool_names(request) and "Bash" in tool_names(request)
    # The message's and the session's own values win over the definition's.
    await run(loop, "write", TurnOptions(
        initial_agent="writer", subagents={"writer": WRITER}, effort="high",
        model="claude-opus-4-1", system_prompt="Session prompt.",
    ))
    request = fake.message_requests[-1]
    assert request["output_config"] == {"effort": "high"}
    assert request["model"] == "claude-opus-4-1"
    assert request["system"][0]["text"].startswith("Session prompt.")


async def test_a_definition_narrows_the_sessions_allowed_tools(
    make_loop: Any, fake: FakeAnthropic
) -> None:
    loop = make_loop()
    fake.script("ok")
    await run(loop, "x", TurnOptions(initial_agent="reviewer", allowed_tools=["Read", "Bash"]))
    assert tool_names(fake.message_requests[-1]) == ["Read"]


async def test_unknown_initial_agent_is_refused_naming_it(
    make_loop: Any, fake: FakeAnthropic
) -> None:
    loop = make_loop()
    with pytest.raises(InvalidInput, match="nobody"):
        await run(loop, "x", TurnOptions(initial_agent="nobody"))
    assert fake.message_requests == []
    spec = loop.spec
    require_initial_agent(spec, None, "reviewer")
    require_initial_agent(spec, {"writer": WRITER}, "writer")
    with pytest.raises(InvalidInput, match=r"'writer'.*known: reviewer"):
        require_initial_agent(spec, None, "writer")


async def test_task_subagents_keep_the_session_list_and_inherit_options(
    make_loop: Any, fake: FakeAnthropic
) -> None:
    loop = make_loop()
    task = {"description": "w", "prompt": "p", "subagent_type": "writer"}
    plain = {**WRITER, "effort": None, "thinking": None}
    fake.script(
        [tool_use("Task", task, id="t1")], "first",
        [tool_use("Task", task, id="t2")], "second",
        "parent done",
    )
    options = TurnOptions(subagents={"writer": plain}, effort="medium", betas=["b-1"])
    events = await run(loop, "go", options)
    results = [e.data for e in events if e.type == "tool_result"]
    answers = [(r["tool_use_id"], r["content"]) for r in results]
    assert answers == [("t1", "first"), ("t2", "second")]
    sub_request = fake.message_requests[1]
    assert sub_request["system"][0]["text"].startswith("You write.")
    assert sub_request["output_config"] == {"effort": "medium"}
    # The definition's own effort and thinking win over the parent's.
    fake.script([tool_use("Task", task, id="t3")], "third", "done")
    await run(loop, "again", TurnOptions(subagents={"writer": WRITER}, effort="high"))
    sub_request = fake.message_requests[-2]
    assert sub_request["output_config"] == {"effort": "low"}
    assert sub_request["thinking"] == {"type": "enabled", "budget_tokens": 2048}


# ------------------------------------------------------------------ todo list, cold resume

TODOS = [
    {"content": "read the spec", "status": "completed", "activeForm": "Reading the spec"},
    {"content": "write the code", "status": "in_progress", "activeForm": "Writing the code"},
]


async def test_todo_list_survives_a_cold_resume_and_a_compaction(
    make_loop: Any, fake: FakeAnthropic
) -> None:
    first = make_loop()
    history: list[dict[str, Any]] = []
    fake.script([tool_use("TodoWrite", {"todos": TODOS})], "planned")
    events = await run(first, "plan it", TurnOptions(), history)
    assert [e.data["todos"] for e in events if e.type == "todo"] == [TODOS]
    await first.aclose()

    # Cold resume: a new loop (a new worker) given the stored history as JSON rows.
    stored = json.loads(json.dumps(history))
    second = make_loop()
    assert second.tools.todos == []
    result = await second.compact(stored)
    assert result is not None  # the two-message turn is summarized...
    assert second.tools.todos == TODOS
    # ...and the list is in the summary the model is sent from now on.
    assert "[in_progress] write the code" in result.summary
    fake.script("continuing")
    await run(second, "go on", TurnOptions(), stored)
    summary = json.dumps(fake.message_requests[-1]["messages"][0])
    assert "This session is being continued" in summary
    assert "[in_progress] write the code" in summary


async def test_a_failed_todo_write_is_not_the_list(make_loop: Any, fake: FakeAnthropic) -> None:
    loop = make_loop()
    history: list[dict[str, Any]] = []
    bad = [{"content": "", "status": "pending"}]
    fake.script(
        [tool_use("TodoWrite", {"todos": TODOS})],
        [tool_use("TodoWrite", {"todos": bad})],
        "ok",
    )
    await run(loop, "plan", TurnOptions(), history)
    resumed = make_loop()
    fake.script("ok")
    await run(resumed, "next", TurnOptions(), json.loads(json.dumps(history)))
    assert resumed.tools.todos == TODOS
