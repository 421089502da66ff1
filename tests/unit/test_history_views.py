"""GET .../messages and GET .../events read from the event log in Ash's shapes; the
shapes parse with Ash's own client models and its helpers' rules."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from ash_sdk.models.message import Message
from ash_sdk.models.session_event import SessionEvent

from ash_ray.api import history
from ash_ray.models import EventRecord, SessionConfig, SessionRecord

SID = "6f9619ff-8b86-4d11-b42d-00c04fc964ff"
NOW = datetime(2026, 1, 1, tzinfo=UTC)

TURN: list[tuple[str, dict[str, Any]]] = [
    ("session_start", {"sessionId": SID, "version": "1"}),
    ("message", {"type": "user", "message": {"role": "user", "content": "hi"},
                 "parent_tool_use_id": None}),
    ("text_delta", {"delta": "Look"}),
    ("message", {"type": "stream_event", "event": {"type": "content_block_delta"}}),
    ("message", {"type": "assistant", "message": {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "hmm", "signature": "s"},
        {"type": "text", "text": "Looking."},
        {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}},
    ]}, "parent_tool_use_id": None}),
    ("tool_use", {"id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}),
    ("tool_result", {"tool_use_id": "toolu_1", "content": "a.txt", "is_error": False}),
    ("message", {"type": "user", "message": {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt"}]},
        "tool_use_result": {"tool_use_id": "toolu_1", "tool_name": "Bash", "stdout": "a.txt",
                            "stderr": "", "is_error": False}}),
    ("message", {"type": "result", "subtype": "success", "is_error": False, "num_turns": 2,
                 "result": "Looking."}),
    ("turn_complete", {"numTurns": 2, "result": "Looking."}),
    ("compact", {"trigger": "manual"}),
    ("error", {"error": "boom"}),
    ("done", {"sessionId": SID}),
]  # fmt: skip


def log(events: list[tuple[str, dict[str, Any]]] = TURN) -> history.ReadEvents:
    rows = [
        EventRecord(session_id=SID, seq=i, type=t, data=d, created_at=NOW)
        for i, (t, d) in enumerate(events, start=1)
    ]

    async def read(after: int, limit: int) -> list[EventRecord]:
        return [r for r in rows if r.seq > after][:limit]

    return read


async def test_messages_are_whole_sdk_messages_without_stream_events() -> None:
    got = await history.messages(SID, log(), 0, 100)
    sdk = [json.loads(m["content"]) for m in got]
    assert [m["type"] for m in sdk] == ["user", "assistant", "user", "result"]
    assert [m["role"] for m in got] == ["user", "assistant", "user", "assistant"]
    assert [m["sequence"] for m in got] == [2, 5, 8, 9]
    assert sdk[2]["tool_use_result"]["stdout"] == "a.txt"
    for item in got:  # Ash's own client model reads each one
        assert Message.from_dict(item).content == item["content"]
    # after= and limit= page through them.
    assert [m["sequence"] for m in await history.messages(SID, log(), 5, 1)] == [8]


async def test_timeline_classifies_as_ash_does() -> None:
    got = await history.timeline(SID, log(), 0, 1000, None)
    entries = [(e["type"], json.loads(e["data"])) for e in got]
    assert [t for t, _ in entries] == [
        "reasoning", "text", "tool_start", "tool_result", "turn_complete", "lifecycle", "error",
    ]  # fmt: skip
    data = dict(entries[:5])
    assert data["reasoning"]["thinking"] == "hmm" and data["text"]["text"] == "Looking."
    assert data["tool_start"] == {
        "event": "message", "toolName": "Bash", "toolId": "toolu_1", "input": {"command": "ls"},
    }  # fmt: skip
    assert data["tool_result"]["toolName"] == "Bash" and data["tool_result"]["stdout"] == "a.txt"
    assert data["turn_complete"]["numTurns"] == 2 and data["turn_complete"]["subtype"] == "success"
    assert entries[5][1]["action"] == "compacted"
    assert len({e["id"] for e in got}) == len(got)
    for item in got:  # Ash's client model (its type enum is strict) reads each one
        assert SessionEvent.from_dict(item).type_ == item["type"]


async def test_timeline_type_filter_and_paging_never_split_an_event() -> None:
    only = await history.timeline(SID, log(), 0, 1000, "tool_start")
    assert [e["type"] for e in only] == ["tool_start"] and only[0]["sequence"] == 5
    # Three entries come from event 5: a limit of 2 stops before it, not inside it.
    page = await history.timeline(SID, log(), 0, 2, None)
    assert [e["type"] for e in page] == ["reasoning", "text", "tool_start"]
    assert [e["type"] for e in await history.timeline(SID, log(), 0, 4, None)] == [
        "reasoning", "text", "tool_start", "tool_result",
    ]  # fmt: skip
    rest = await history.timeline(SID, log(), page[-1]["sequence"], 1000, None)
    assert [e["type"] for e in rest][:1] == ["tool_result"]


async def test_scan_reads_past_one_page() -> None:
    many = [("error", {"error": str(i)}) for i in range(history.PAGE + 5)]
    got = await history.timeline(SID, log(many), 0, 100_000, "error")
    assert len(got) == history.PAGE + 5


def test_session_json_carries_model_and_config_without_secrets() -> None:
    config = SessionConfig(
        model="claude-x", allowed_tools=["Read"], extra_env={"TOKEN": "s3cret"},
        mcp_servers={"m": {"url": "http://127.0.0.1:1/mcp", "headers": {"Auth": "k"}}},
    )  # fmt: skip
    rec = SessionRecord(
        id=SID, agent_name="a", sandbox_id=SID, status="active", created_at=NOW,
        last_active_at=NOW, config=config,
    )  # fmt: skip
    out = rec.public()
    assert out["model"] == "claude-x"
    assert out["config"]["allowedTools"] == ["Read"] and out["config"]["model"] == "claude-x"
    assert out["config"]["extraEnv"] == {"TOKEN": "***"}
    assert out["config"]["mcpServers"]["m"]["headers"] == {"Auth": "***"}
    assert "s3cret" not in json.dumps(out)
