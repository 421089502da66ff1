"""Cost and length: prompt caching, compaction, parallel read-only tools, API options."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
from test_agent_loop import collect, result_of, write_agent

from ash_ray.agent import AgentLoop, TurnOptions, cache, load_agent
from ash_ray.agent.compact import context_of
from ash_ray.agent.tools import Tool
from ash_ray.config import load_settings
from ash_ray.sandbox import create_sandbox
from ash_ray.testing.fake_anthropic import ErrorReply, FakeAnthropic, tool_use

CC = {"type": "ephemeral"}


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture
async def sdk(fake: FakeAnthropic) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(base_url=fake.url, api_key="sk-test", max_retries=0)
    yield client
    await client.close()


@pytest.fixture
def make_loop(tmp_path: Path, sdk: anthropic.AsyncAnthropic) -> Any:
    """A loop over the default test agent; settings overrides and extra tools as keywords."""

    def _make(tools: tuple[Tool, ...] = (), **overrides: Any) -> AgentLoop:
        agent = tmp_path / "agent"
        if not agent.exists():
            write_agent(agent)
        overrides.setdefault("default_model", "claude-sonnet-4-6")
        config = load_settings(data_dir=tmp_path / "data", **overrides)
        sandbox = create_sandbox(config, tmp_path / "data" / "sessions" / "s1")
        return AgentLoop(sdk, load_agent(agent), sandbox, config, session_id="s1",
                         extra_tools=tools)  # fmt: skip

    return _make


def marks(request: dict[str, Any]) -> list[str]:
    """Where a request's cache breakpoints are: tool:<name>, system, msg:<index>."""
    found = [f"tool:{t['name']}" for t in request.get("tools", []) if t.get("cache_control")]
    found += ["system" for b in request["system"] if b.get("cache_control")]
    for i, message in enumerate(request["messages"]):
        content = message["content"]
        if isinstance(content, list) and any(b.get("cache_control") for b in content):
            found.append(f"msg:{i}")
    return found


def input_total(usage: dict[str, int]) -> int:
    return (usage["input_tokens"] + usage["cache_read_input_tokens"]
            + usage["cache_creation_input_tokens"])  # fmt: skip


# ------------------------------------------------------------------ caching


async def test_each_call_of_a_tool_loop_reads_the_earlier_prefix(
    make_loop: Any, fake: FakeAnthropic
) -> None:
    loop = make_loop()
    fake.script(
        [tool_use("Bash", {"command": "echo one"})],
        [tool_use("Bash", {"command": "echo two"})],
        [tool_use("Bash", {"command": "echo three"})],
        "done",
    )
    events = await collect(loop, [], "run three commands " + "please " * 50)
    requests = fake.message_requests
    assert len(requests) == 4
    # Tools, system, the last message and the previous call's last message: 4 at most.
    assert marks(requests[0]) == ["tool:web_search", "system", "msg:0"]
    for n, request in enumerate(requests[1:], start=1):
        last = len(request["messages"]) - 1
        assert marks(request) == ["tool:web_search", "system", f"msg:{last - 2}", f"msg:{last}"], n
    per_call = [e.data["message"]["usage"] for e in events if e.data.get("type") == "assistant"]
    for before, after in itertools.pairwise(per_call):
        # Everything the previous call sent is read back; only the new tail is written.
        assert (
            after["cache_read_input_tokens"]
            == before["cache_read_input_tokens"] + before["cache_creation_input_tokens"]
        )
    # The turn's usage is exactly the sum of what the API reported per call.
    usage = result_of(events)["usage"]
    for key in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
                "output_tokens"):  # fmt: skip
        assert usage[key] == sum(u[key] for u in per_call), key
    assert usage["cache_read_input_tokens"] > 0.6 * input_total(usage)


async def test_the_next_turn_reads_the_previous_one(make_loop: Any, fake: FakeAnthropic) -> None:
    loop = make_loop()
    conversation: list[dict[str, Any]] = []
    first = result_of(await collect(loop, conversation, "hello " * 100))["usage"]
    second = result_of(await collect(loop, conversation, "again"))["usage"]
    assert second["cache_read_input_tokens"] == input_total(first) - first["input_tokens"]
    # Breakpoints are on copies: the stored conversation carries none.
    assert "cache_control" not in json.dumps(conversation)


def test_breakpoints_skip_thinking_and_respect_the_budget() -> None:
    thought = {"type": "thinking", "thinking": "hm", "signature": "s"}
    messages = [
        {"role": "assistant", "content": [{"type": "text", "text": "a"}, thought]},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": [thought]},
    ]
    marked = cache.mark_messages(messages, budget=2)
    # The last block that may carry a mark gets it; a thinking-only message gets none.
    assert marked[0]["content"][0]["cache_control"] == CC and marked[2] == messages[2]
    assert "cache_control" not in json.dumps(messages)  # copies, not the originals
    assert cache.mark_messages(messages, budget=1)[0] == messages[0]
    one = cache.mark_messages([{"role": "user", "content": "hi"}])
    assert one == [
        {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": CC}]}
    ]


# ------------------------------------------------------------------ options


async def test_thinking_effort_and_betas_reach_the_api(make_loop: Any, fake: FakeAnthropic) -> None:
    loop = make_loop()
    options = TurnOptions(
        thinking={"type": "enabled", "budget_tokens": 2048},
        effort="low",
        betas=["context-1m-2025-08-07", "interleaved-thinking-2025-05-14"],
    )
    await collect(loop, [], "hi", options)
    request = fake.requests[-1]
    assert request.body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert request.body["output_config"] == {"effort": "low"}
    assert request.headers["anthropic-beta"] == (
        "context-1m-2025-08-07,interleaved-thinking-2025-05-14"
    )
    await collect(loop, [], "plain")
    plain = fake.requests[-1]
    assert "anthropic-beta" not in plain.headers
    assert not {"thinking", "output_config", "betas"} & set(plain.body)


# ------------------------------------------------------------------ parallel tools


def latch_tool(name: str, handler: Any, read_only: bool) -> Tool:
    schema = {"type": "object", "properties": {}, "required": [], "additionalProperties": False}
    return Tool(name, f"test tool {name}", schema, handler, read_only=read_only)


async def test_read_only_calls_run_concurrently_in_order(
    make_loop: Any, fake: FakeAnthropic
) -> None:
    a_started, b_started = asyncio.Event(), asyncio.Event()

    async def probe_a(ctx: Any, args: Any) -> str:
        a_started.set()
        await b_started.wait()  # only returns if B runs at the same time
        return "A"

    async def probe_b(ctx: Any, args: Any) -> str:
        b_started.set()
        await a_started.wait()
        return "B"

    loop = make_loop(
        tools=(latch_tool("ProbeA", probe_a, True), latch_tool("ProbeB", probe_b, True))
    )
    fake.script([tool_use("ProbeA", {}, id="t1"), tool_use("ProbeB", {}, id="t2"),
                 tool_use("LS", {}, id="t3")], "ok")  # fmt: skip
    events = await asyncio.wait_for(collect(loop, [], "probe"), timeout=30)
    results = [e.data for e in events if e.type == "tool_result"]
    assert [r["tool_use_id"] for r in results] == ["t1", "t2", "t3"]
    assert [r["content"] for r in results[:2]] == ["A", "B"]
    sent = fake.message_requests[1]["messages"][-1]["content"]
    assert [b["tool_use_id"] for b in sent] == ["t1", "t2", "t3"]


async def test_writes_run_one_at_a_time(make_loop: Any, fake: FakeAnthropic) -> None:
    first_started, release, second_started = asyncio.Event(), asyncio.Event(), asyncio.Event()
    seen: list[bool] = []

    async def first(ctx: Any, args: Any) -> str:
        first_started.set()
        await release.wait()
        return "first"

    async def second(ctx: Any, args: Any) -> str:
        second_started.set()
        return "second"

    loop = make_loop(tools=(latch_tool("First", first, False), latch_tool("Second", second, False)))
    fake.script([tool_use("First", {}), tool_use("Second", {})], "ok")
    turn = asyncio.create_task(collect(loop, [], "write"))
    await asyncio.wait_for(first_started.wait(), timeout=30)
    seen.append(second_started.is_set())
    release.set()
    events = await asyncio.wait_for(turn, timeout=30)
    assert seen == [False]  # the second write waited for the first
    assert [e.data["content"] for e in events if e.type == "tool_result"] == ["first", "second"]


async def test_built_in_read_only_flags() -> None:
    from ash_ray.agent.tools import BUILTIN_TOOLS

    flagged = {name for name, tool in BUILTIN_TOOLS.items() if tool.read_only}
    assert flagged == {"Read", "Glob", "Grep", "LS", "WebFetch"}


# ------------------------------------------------------------------ compaction

WINDOW = 4000  # the tool definitions (agenttools) take about 1000


def long_prompt(n: int) -> str:
    return f"request {n}: " + f"detail-{n} " * 40


async def test_auto_compaction_keeps_recent_turns(make_loop: Any, fake: FakeAnthropic) -> None:
    fake.configure(context_window_tokens=WINDOW)
    loop = make_loop(context_window_tokens=WINDOW, compact_threshold=0.8, compact_keep_turns=2)
    conversation: list[dict[str, Any]] = []
    compactions, boundaries = [], []
    for n in range(12):
        events = await collect(loop, conversation, long_prompt(n))
        assert result_of(events)["subtype"] == "success", n
        compactions += [e.data for e in events if e.type == "compact"]
        boundaries += [e.data for e in events if e.data.get("subtype") == "compact_boundary"]
    assert compactions, "a 12-turn session over a small window must compact"
    event = compactions[0]
    # Each also as the Claude Agent SDK's compact_boundary message.
    assert [b["compact_metadata"] for b in boundaries] == [
        {"trigger": "auto", "pre_tokens": c["tokensBefore"]} for c in compactions
    ]
    assert {c["trigger"] for c in compactions} == {"auto"}  # before the API had to refuse
    assert event["trigger"] == "auto" and event["summarizedTurns"] >= 1
    assert event["tokensAfter"] < event["tokensBefore"]
    assert "request 0" in event["summary"]  # the fake summarizes the user's requests
    # The full history stays: every prompt and answer, plus one boundary per compaction.
    prompts = [m for m in conversation if m["content"] == long_prompt(0)]
    assert len(prompts) == 1 and len(conversation) == 24 + len(compactions)
    # What the model got last: the summary first, then the two recent turns verbatim.
    last = fake.message_requests[-1]["messages"]
    assert "Summary of the earlier conversation" in last[0]["content"][0]["text"]
    texts = json.dumps(last)
    assert long_prompt(11) in texts and long_prompt(10) in texts and long_prompt(0) not in texts
    summaries = [r for r in fake.message_requests if "tools" not in r]
    assert len(summaries) == len(compactions)


async def test_compaction_never_splits_a_tool_call(make_loop: Any, fake: FakeAnthropic) -> None:
    fake.configure(context_window_tokens=WINDOW)
    loop = make_loop(context_window_tokens=WINDOW, compact_keep_turns=1)
    conversation: list[dict[str, Any]] = []
    # One long turn of tool calls: the cut has to fall inside it.
    steps = [[tool_use("Bash", {"command": f"echo {'x' * 300} {i}"})] for i in range(10)]
    fake.script(*steps, "all done")
    events = await collect(loop, conversation, "many steps")
    assert result_of(events)["subtype"] == "success"
    assert any(e.type == "compact" for e in events)
    for request in fake.message_requests:
        if "tools" not in request:
            continue  # the summary call
        messages = request["messages"]
        for i, message in enumerate(messages):
            content = message["content"] if isinstance(message["content"], list) else []
            ids = [b["tool_use_id"] for b in content if b.get("type") == "tool_result"]
            if ids:
                asked = [b["id"] for b in messages[i - 1]["content"] if b.get("type") == "tool_use"]
                assert messages[i - 1]["role"] == "assistant" and asked == ids


async def test_prompt_too_long_compacts_and_retries_once(
    make_loop: Any, fake: FakeAnthropic
) -> None:
    # The loop believes the window is huge; the API says otherwise.
    loop = make_loop(context_window_tokens=1_000_000)
    conversation: list[dict[str, Any]] = []
    for n in range(10):
        await collect(loop, conversation, long_prompt(n))
    fake.configure(context_window_tokens=2500)  # the 11th call is about 2900 tokens
    events = await collect(loop, conversation, long_prompt(10))
    compact = [e.data for e in events if e.type == "compact"]
    assert [c["trigger"] for c in compact] == ["prompt_too_long"]
    assert result_of(events)["subtype"] == "success"
    assert result_of(events)["result"].startswith("echo: request 10")
    _refused, summary, retried = fake.message_requests[-3:]
    assert "tools" not in summary and retried["messages"][-1]["content"][0]["text"] == (
        long_prompt(10)
    )


async def test_prompt_too_long_after_compacting_is_an_error(
    make_loop: Any, fake: FakeAnthropic
) -> None:
    loop = make_loop(context_window_tokens=1_000_000)
    conversation: list[dict[str, Any]] = []
    for n in range(3):
        await collect(loop, conversation, long_prompt(n))
    fake.configure(context_window_tokens=1000)  # less than system + tools: never fits
    with pytest.raises(anthropic.BadRequestError, match="prompt is too long"):
        await collect(loop, conversation, "more")
    attempts = [r for r in fake.message_requests if "tools" in r]
    assert len(attempts) == 3 + 2  # three turns, then one try and one retry


async def test_compact_on_demand_and_cold_resume(make_loop: Any, fake: FakeAnthropic) -> None:
    loop = make_loop()
    conversation: list[dict[str, Any]] = []
    assert await loop.compact(conversation) is None  # nothing to summarize
    for n in range(5):
        await collect(loop, conversation, long_prompt(n))
    result = await loop.compact(conversation, betas=["context-1m-2025-08-07"])
    assert result is not None and result.trigger == "manual"
    summary_call = fake.requests[-1]
    assert summary_call.headers["anthropic-beta"] == "context-1m-2025-08-07"
    assert summary_call.body["max_tokens"] == 4096 and "tools" not in summary_call.body
    assert result.summarized_turns == 3 and result.kept_messages == 4
    assert result.usage.output_tokens > 0
    # A cold resume reloads the stored rows (JSON) into a fresh loop.
    stored = json.loads(json.dumps(conversation))
    fresh = make_loop()
    await collect(fresh, stored, "what did I ask first?")
    sent = fake.message_requests[-1]["messages"]
    assert "request 0" in sent[0]["content"][0]["text"]
    assert long_prompt(4) in json.dumps(sent) and long_prompt(0) not in json.dumps(sent)
    view, _ = context_of(stored)
    assert len(view) == 1 + 4 + 2


async def test_scripted_error_is_not_mistaken_for_too_long(
    make_loop: Any, fake: FakeAnthropic
) -> None:
    loop = make_loop()
    fake.script(ErrorReply(400, "invalid_request_error", "bad request"))
    with pytest.raises(anthropic.BadRequestError):
        await collect(loop, [], "x")
    assert len(fake.message_requests) == 1


def test_only_consecutive_read_only_calls_share_a_batch() -> None:
    from ash_ray.agent.tool_calls import _batches
    from ash_ray.agent.tools import BUILTIN_TOOLS

    names = ["Read", "Grep", "Write", "LS", "Glob", "Bash", "Nope"]
    calls = [{"id": str(i), "name": name, "input": {}} for i, name in enumerate(names)]
    grouped = [[c["name"] for c in batch] for batch in _batches(calls, BUILTIN_TOOLS)]
    assert grouped == [["Read", "Grep"], ["Write"], ["LS", "Glob"], ["Bash"], ["Nope"]]


async def test_a_second_compaction_summarizes_the_first_summary(
    make_loop: Any, fake: FakeAnthropic
) -> None:
    loop = make_loop(compact_keep_turns=1)
    conversation: list[dict[str, Any]] = []
    for n in range(3):
        await collect(loop, conversation, long_prompt(n))
    assert await loop.compact(conversation) is not None
    for n in range(3, 5):
        await collect(loop, conversation, long_prompt(n))
    second = await loop.compact(conversation)
    assert second is not None
    # The earlier summary went into the new one, as the transcript's first user text.
    request = fake.message_requests[-1]["messages"][0]["content"]
    assert "Summary of the earlier conversation" in request
    view, index = context_of(conversation)
    assert index[0] == -1 and len(view) == 1 + 2  # summary + the last turn
    assert view[1]["content"] == long_prompt(4)
    assert all(i >= 0 and "compact boundary" not in json.dumps(conversation[i]) for i in index[1:])


async def test_kept_turns_across_an_earlier_boundary(make_loop: Any, fake: FakeAnthropic) -> None:
    loop = make_loop(compact_keep_turns=2)
    conversation: list[dict[str, Any]] = []
    for n in range(3):
        await collect(loop, conversation, long_prompt(n))
    assert await loop.compact(conversation) is not None
    await collect(loop, conversation, long_prompt(3))
    assert await loop.compact(conversation) is not None
    view, _ = context_of(conversation)
    await collect(loop, conversation, "next")
    sent = fake.message_requests[-1]["messages"]
    assert json.dumps(sent).count("compact boundary") == 0  # boundaries are never sent
    assert json.dumps(sent).count("Summary of the earlier conversation") == 1
    assert [m["content"] for m in view[1:] if isinstance(m["content"], str)] == [
        long_prompt(2),
        long_prompt(3),
    ]
