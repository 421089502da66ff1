"""The agent loop, driven through the real anthropic SDK against the fake Messages API."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import anthropic
import pytest

from ash_ray.agent import AgentEvent, AgentLoop, TurnOptions, load_agent
from ash_ray.config import load_settings
from ash_ray.sandbox import create_sandbox
from ash_ray.testing.fake_anthropic import (
    ErrorReply,
    FakeAnthropic,
    Reply,
    text,
    thinking,
    tool_use,
)

ALL_TOOLS = [
    "Bash",
    "Read",
    "Write",
    "Edit",
    "Glob",
    "Grep",
    "LS",
    "MultiEdit",
    "NotebookEdit",
    "WebFetch",
    "TodoWrite",
]


def write_agent(root: Path, settings: dict[str, Any] | None = None, skills: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "CLAUDE.md").write_text("You are a careful test agent.")
    if settings is not None:
        (root / ".claude").mkdir(exist_ok=True)
        (root / ".claude" / "settings.json").write_text(json.dumps(settings))
    if skills:
        skill = root / ".claude" / "skills" / "greet"
        skill.mkdir(parents=True)
        (skill / "SKILL.md").write_text("---\nname: greet\ndescription: Say hello\n---\nWave.\n")
    return root


@pytest.fixture
def make_loop(tmp_path: Path, client: anthropic.AsyncAnthropic) -> Any:
    def _make(settings: dict[str, Any] | None = None, **overrides: Any) -> AgentLoop:
        agent = write_agent(tmp_path / "agent", settings, overrides.pop("skills", False))
        overrides.setdefault("default_model", "claude-sonnet-4-6")
        config = load_settings(data_dir=tmp_path / "data", **overrides)
        sandbox = create_sandbox(config, tmp_path / "data" / "sessions" / "s1")
        return AgentLoop(client, load_agent(agent), sandbox, config, session_id="s1")

    return _make


async def collect(
    loop: AgentLoop,
    conversation: list[dict[str, Any]],
    prompt: str,
    options: TurnOptions | None = None,
    interrupt: asyncio.Event | None = None,
) -> list[AgentEvent]:
    events = []
    async for event in loop.run_turn(
        conversation, prompt, options or TurnOptions(), interrupt or asyncio.Event()
    ):
        events.append(event)
    return events


def result_of(events: list[AgentEvent]) -> dict[str, Any]:
    assert events[-1].type == "turn_complete"
    assert events[-2].type == "message" and events[-2].data["type"] == "result"
    return events[-2].data


def request_model(fake: FakeAnthropic) -> str:
    return str(fake.message_requests[-1]["model"])


def assert_valid(conversation: list[dict[str, Any]]) -> None:
    """Every tool_use is answered by a tool_result in the next (user) message."""
    json.dumps(conversation)  # JSON-serialisable
    for i, message in enumerate(conversation):
        assert message["role"] in ("user", "assistant")
        if message["role"] != "assistant":
            continue
        assert message["content"], "an assistant message may not be empty"
        ids = {b["id"] for b in message["content"] if b["type"] == "tool_use"}
        if ids:
            answer = conversation[i + 1]
            assert answer["role"] == "user"
            assert {b["tool_use_id"] for b in answer["content"]} == ids


async def test_plain_text_answer(make_loop: Any, fake: FakeAnthropic) -> None:
    loop = make_loop()
    fake.script("Hello there!")
    conversation: list[dict[str, Any]] = []
    events = await collect(loop, conversation, "hi")
    assert [e.type for e in events] == ["message", "message", "message", "turn_complete"]
    prompt = events[0].data  # the prompt, as the SDK's user message
    assert prompt["type"] == "user" and prompt["message"] == {"role": "user", "content": "hi"}
    assistant = events[1].data
    assert assistant["type"] == "assistant" and assistant["session_id"] == "s1"
    assert assistant["message"]["content"] == [{"type": "text", "text": "Hello there!"}]
    assert assistant["message"]["stop_reason"] == "end_turn"
    assert assistant["message"]["usage"]["input_tokens"] > 0
    result = result_of(events)
    assert result["subtype"] == "success" and result["is_error"] is False
    assert result["result"] == "Hello there!" and result["num_turns"] == 1
    assert set(result["usage"]) == {
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    }
    assert result["usage"]["output_tokens"] > 0 and result["total_cost_usd"] > 0
    assert events[-1].data == {"numTurns": 1, "result": "Hello there!"}
    assert conversation == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello there!"}]},
    ]
    assert loop.last_usage.input_tokens == result["usage"]["input_tokens"]
    assert loop.model == "claude-sonnet-4-6" and request_model(fake) == "claude-sonnet-4-6"
    request = fake.message_requests[0]
    assert request["stream"] is True and request["max_tokens"] == 8192
    assert request["system"][0]["text"].startswith("You are a careful test agent.")
    assert [t["name"] for t in request["tools"]] == [*ALL_TOOLS, "web_search"]


async def test_partial_deltas_and_thinking(make_loop: Any, fake: FakeAnthropic) -> None:
    loop = make_loop()
    fake.script(Reply([thinking("Let me think."), text("A fairly long answer, in pieces.")]))
    conversation: list[dict[str, Any]] = []
    events = await collect(loop, conversation, "hi", TurnOptions(include_partial=True))
    deltas = "".join(e.data["delta"] for e in events if e.type == "text_delta")
    thoughts = "".join(e.data["delta"] for e in events if e.type == "thinking_delta")
    assert deltas == "A fairly long answer, in pieces." and thoughts == "Let me think."
    first_message = next(
        i for i, e in enumerate(events) if e.type == "message" and e.data["type"] == "assistant"
    )
    # Before the whole reply: its deltas, each followed by its SDK stream_event message.
    partial = events[1:first_message]
    assert {e.data["type"] for e in partial if e.type == "message"} == {"stream_event"}
    assert all(e.type.endswith("_delta") or e.type == "message" for e in partial)
    assert conversation[1]["content"][0] == {
        "type": "thinking",
        "thinking": "Let me think.",
        "signature": "fake-signature",
    }


async def test_tool_call_round_trip(make_loop: Any, fake: FakeAnthropic) -> None:
    loop = make_loop()
    fake.script(
        Reply([text("Running it."), tool_use("Bash", {"command": "echo hi"}, id="toolu_1")]),
        "It printed hi.",
    )
    conversation: list[dict[str, Any]] = []
    events = await collect(loop, conversation, "say hi")
    kinds = [(e.type, e.data.get("type")) for e in events]
    assert kinds == [
        ("message", "user"),
        ("message", "assistant"),
        ("tool_use", None),
        ("tool_result", None),
        ("message", "user"),
        ("message", "assistant"),
        ("message", "result"),
        ("turn_complete", None),
    ]
    assert events[2].data == {"id": "toolu_1", "name": "Bash", "input": {"command": "echo hi"}}
    assert events[3].data == {"tool_use_id": "toolu_1", "content": "hi", "is_error": False}
    user = events[4].data["message"]
    assert user["role"] == "user" and user["content"][0]["type"] == "tool_result"
    assert events[4].data["tool_use_result"] == {
        "tool_use_id": "toolu_1", "tool_name": "Bash", "stdout": "hi", "stderr": "",
        "is_error": False,
    }
    assert result_of(events)["num_turns"] == 2
    assert result_of(events)["result"] == "It printed hi."
    assert_valid(conversation)
    # The second request carried the tool result back to the model.
    second = fake.message_requests[1]["messages"]
    assert second[-1]["content"][0] == {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": "hi",
        "is_error": False,
        "cache_control": {"type": "ephemeral"},  # the next call reads up to here
    }
    assert second[-2]["content"][1]["type"] == "tool_use"


async def test_denied_command_never_runs(make_loop: Any, fake: FakeAnthropic) -> None:
    loop = make_loop({"permissions": {"deny": ["Bash(touch:*)"]}})
    marker = loop.sandbox.workspace / "marker"
    fake.script(
        [tool_use("Bash", {"command": f"touch {marker}"}, id="toolu_d")],
        "Understood.",
    )
    conversation: list[dict[str, Any]] = []
    events = await collect(loop, conversation, "make a marker")
    (denied,) = [e.data for e in events if e.type == "tool_result"]
    assert denied["is_error"] is True and "denied" in denied["content"]
    assert not marker.exists()
    assert result_of(events)["subtype"] == "success"
    assert_valid(conversation)


async def test_allow_rules_restrict_the_tool(make_loop: Any, fake: FakeAnthropic) -> None:
    loop = make_loop({"permissions": {"allow": ["Bash(echo:*)"]}})
    marker = loop.sandbox.workspace / "marker"
    fake.script(
        [
            tool_use("Bash", {"command": "echo allowed"}, id="t1"),
            tool_use("Bash", {"command": f"echo ok && touch {marker}"}, id="t2"),
        ],
        "done",
    )
    events = await collect(loop, [], "go")
    results = {e.data["tool_use_id"]: e.data for e in events if e.type == "tool_result"}
    assert results["t1"] == {"tool_use_id": "t1", "content": "allowed", "is_error": False}
    assert results["t2"]["is_error"] and not marker.exists()


async def test_session_tool_lists_filter_what_is_offered(
    make_loop: Any, fake: FakeAnthropic
) -> None:
    loop = make_loop(skills=True)
    fake.script("a", "b", [tool_use("Bash", {"command": "echo no"}, id="t")], "c")
    await collect(loop, [], "x")
    assert [t["name"] for t in fake.message_requests[0]["tools"]] == [
        *ALL_TOOLS,
        "Skill",
        "web_search",
    ]
    assert "greet: Say hello" in fake.message_requests[0]["system"][0]["text"]
    await collect(loop, [], "x", TurnOptions(allowed_tools=["Read", "Bash(git status)"]))
    assert [t["name"] for t in fake.message_requests[1]["tools"]] == ["Bash", "Read"]
    events = await collect(loop, [], "x", TurnOptions(disallowed_tools=["Bash", "Skill"]))
    assert "Bash" not in [t["name"] for t in fake.message_requests[2]["tools"]]
    (result,) = [e.data for e in events if e.type == "tool_result"]
    assert result["is_error"] and "No such tool" in result["content"]


async def test_max_turns(make_loop: Any, fake: FakeAnthropic) -> None:
    loop = make_loop()
    for i in range(3):
        fake.script([tool_use("Bash", {"command": f"echo {i}"}, id=f"t{i}")])
    conversation: list[dict[str, Any]] = []
    events = await collect(loop, conversation, "loop", TurnOptions(max_turns=2))
    result = result_of(events)
    assert result["subtype"] == "error_max_turns" and result["is_error"] is True
    assert result["num_turns"] == 2
    assert len(fake.message_requests) == 2
    assert_valid(conversation)


async def test_budget(make_loop: Any, fake: FakeAnthropic) -> None:
    loop = make_loop()
    fake.script([tool_use("Bash", {"command": "echo 1"}, id="t1")], "never asked")
    events = await collect(loop, [], "spend", TurnOptions(max_budget_usd=1e-9))
    result = result_of(events)
    assert result["subtype"] == "error_max_budget_usd" and result["num_turns"] == 1
    assert len(fake.message_requests) == 1


async def test_interrupt_mid_stream(make_loop: Any, fake: FakeAnthropic) -> None:
    loop = make_loop()
    fake.script("word " * 400)
    interrupt = asyncio.Event()
    conversation: list[dict[str, Any]] = []
    events = []
    # The reply stops after its first delta until released: only the interrupt can end it.
    with fake.hold(at="token:1", timeout_s=30) as hold:
        async for event in loop.run_turn(
            conversation, "talk", TurnOptions(include_partial=True), interrupt
        ):
            events.append(event)
            if event.type == "text_delta":
                interrupt.set()
        assert not hold.released, "the turn ended because the model finished, not the interrupt"
    assert sum(e.type == "text_delta" for e in events) == 1
    result = result_of(events)
    assert result["subtype"] == "interrupted" and result["is_error"] is True
    assert result["num_turns"] == 1
    # Nothing finished streaming, so nothing of the reply is kept.
    assert conversation == [{"role": "user", "content": "talk"}]
    assert_valid(conversation)


async def test_interrupt_keeps_finished_blocks_only(make_loop: Any, fake: FakeAnthropic) -> None:
    loop = make_loop()
    fake.script([text("Done part."), text("more " * 200), tool_use("Bash", {"command": "true"})])
    interrupt = asyncio.Event()
    conversation: list[dict[str, Any]] = []
    events = []
    # Held after "Done part." and the first delta of the second block.
    with fake.hold(at="token:2", timeout_s=30) as hold:
        async for event in loop.run_turn(
            conversation, "talk", TurnOptions(include_partial=True), interrupt
        ):
            events.append(event)
            if event.type == "text_delta" and "more" in event.data["delta"]:
                interrupt.set()
        assert not hold.released
    assert conversation[1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "Done part."}],
    }
    assistant = [e.data for e in events if e.type == "message" and e.data["type"] == "assistant"]
    assert assistant[0]["message"]["stop_reason"] is None
    assert not [e for e in events if e.type == "tool_use"]
    assert result_of(events)["result"] == "Done part."
    assert_valid(conversation)


async def test_interrupt_while_a_tool_runs(make_loop: Any, fake: FakeAnthropic) -> None:
    loop = make_loop()
    marker = loop.sandbox.workspace / "second-ran"
    fake.script(
        [
            tool_use("Bash", {"command": "sleep 30"}, id="slow"),
            tool_use("Bash", {"command": f"touch {marker}"}, id="next"),
        ]
    )
    interrupt = asyncio.Event()
    conversation: list[dict[str, Any]] = []
    events = []
    started = time.monotonic()
    async for event in loop.run_turn(conversation, "wait", TurnOptions(), interrupt):
        events.append(event)
        if event.type == "tool_use" and event.data["id"] == "slow":
            asyncio.get_running_loop().call_later(0.3, interrupt.set)
    assert time.monotonic() - started < 10
    results = {e.data["tool_use_id"]: e.data for e in events if e.type == "tool_result"}
    assert results["slow"]["is_error"] and "Interrupted" in results["slow"]["content"]
    assert results["next"]["is_error"] and "before the tool ran" in results["next"]["content"]
    assert not marker.exists()
    assert result_of(events)["subtype"] == "interrupted"
    assert len(fake.message_requests) == 1
    assert_valid(conversation)


async def test_structured_output(make_loop: Any, fake: FakeAnthropic) -> None:
    loop = make_loop()
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}}
    fake.script('```json\n{"answer": 42}\n```', "not json at all")
    fmt = {"type": "json_schema", "schema": schema}
    events = await collect(loop, [], "compute", TurnOptions(output_format=fmt))
    assert result_of(events)["structured_output"] == {"answer": 42}
    assert json.dumps(schema) in fake.message_requests[0]["system"][0]["text"]
    events = await collect(loop, [], "compute", TurnOptions(output_format=fmt))
    assert "structured_output" not in result_of(events)


async def test_options_override_model_and_system_prompt(
    make_loop: Any, fake: FakeAnthropic
) -> None:
    loop = make_loop()
    fake.script("ok")
    await collect(loop, [], "x", TurnOptions(model="claude-haiku-4-5", system_prompt="Be terse."))
    request = fake.message_requests[0]
    assert request["model"] == "claude-haiku-4-5" and loop.model == "claude-haiku-4-5"
    assert request["system"][0]["text"].startswith("Be terse.")


async def test_api_errors_propagate(make_loop: Any, fake: FakeAnthropic) -> None:
    loop = make_loop()
    fake.script(ErrorReply(status=400, type="invalid_request_error", message="bad request"))
    conversation: list[dict[str, Any]] = []
    with pytest.raises(anthropic.BadRequestError):
        await collect(loop, conversation, "x")
    fake.script(ErrorReply(in_stream=True))
    with pytest.raises(anthropic.APIError):
        await collect(loop, conversation, "y")


async def test_conversation_continues_across_turns(make_loop: Any, fake: FakeAnthropic) -> None:
    loop = make_loop()
    conversation: list[dict[str, Any]] = []
    fake.script("first", "second")
    await collect(loop, conversation, "one")
    await collect(loop, conversation, "two")
    sent = fake.message_requests[1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[-1]["content"] == [
        {"type": "text", "text": "two", "cache_control": {"type": "ephemeral"}}
    ]
    assert len(conversation) == 4
