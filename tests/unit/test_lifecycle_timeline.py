"""Lifecycle entries of the timeline: how they are classified, and that a lifecycle event
after a turn's ``done`` never makes the turn look open (who numbers them: the registry
tests in test_registry_services.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from ash_sdk.models.session_event import SessionEvent

from ash_ray.api import history
from ash_ray.lifecycle_events import WINDOW, turn_open
from ash_ray.models import EventRecord
from ash_ray.session.events import EventLog
from ash_ray.session.streams import follow
from tests.unit.test_history_views import SID, log

NOW = datetime(2026, 1, 1, tzinfo=UTC)

LIVES: list[tuple[str, dict[str, Any]]] = [
    ("lifecycle", {"action": "created", "agentName": "a", "model": None}),
    ("session_start", {"sessionId": SID, "version": "1"}),
    ("message", {"type": "result", "subtype": "success", "is_error": False, "num_turns": 1,
                 "result": "ok"}),
    ("done", {"sessionId": SID}),
    ("lifecycle", {"action": "paused"}),
    ("lifecycle", {"action": "resumed", "path": "cold", "source": "store"}),
    ("lifecycle", {"action": "forked", "parentSessionId": SID}),
    ("lifecycle", {"action": "ended"}),
]  # fmt: skip


def records(types: list[str]) -> list[EventRecord]:
    return [
        EventRecord(session_id=SID, seq=i, type=t, data={"action": "x"}, created_at=NOW)
        for i, t in enumerate(types, start=1)
    ]


def reader(rows: list[EventRecord]) -> history.ReadEvents:
    async def read(after: int, limit: int) -> list[EventRecord]:
        return [r for r in rows if r.seq > after][:limit]

    return read


# ---------------------------------------------------------------- classification


async def test_lifecycle_events_are_lifecycle_entries_in_order_and_never_messages() -> None:
    got = await history.timeline(SID, log(LIVES), 0, 1000, "lifecycle")
    data = [json.loads(e["data"]) for e in got]
    assert [d["action"] for d in data] == ["created", "paused", "resumed", "forked", "ended"]
    assert [e["sequence"] for e in got] == [1, 5, 6, 7, 8]
    assert data[0] == {"event": "lifecycle", "action": "created", "agentName": "a",
                       "model": None}  # fmt: skip
    assert data[2]["path"] == "cold" and data[2]["source"] == "store"
    assert data[3]["parentSessionId"] == SID
    for item in got:  # Ash's client model reads each one
        assert SessionEvent.from_dict(item).type_ == "lifecycle"
    everything = await history.timeline(SID, log(LIVES), 0, 1000, None)
    assert [e["type"] for e in everything] == ["lifecycle", "turn_complete"] + ["lifecycle"] * 4
    # GET .../messages: only the SDK messages, no lifecycle event.
    messages = await history.messages(SID, log(LIVES), 0, 100)
    assert [m["sequence"] for m in messages] == [3]


# ---------------------------------------------------------------- an open turn


async def test_a_turn_is_open_only_when_its_last_event_past_lifecycle_ones_is_not_done() -> None:
    many = ["lifecycle"] * (WINDOW * 2 + 3)  # more than one window to read back through
    closed = records(["session_start", "message", "done", *many])
    assert not await turn_open(reader(closed), len(closed))
    cut = records(["session_start", "message", *many])
    assert await turn_open(reader(cut), len(cut))
    assert not await turn_open(reader(records(many)), len(many))
    assert not await turn_open(reader([]), 0)
    # Only the log up to last_seq counts (a newer event is not the session's yet).
    assert await turn_open(reader(records(["session_start", "done"])), 1)


async def test_a_lifecycle_event_waits_behind_a_done_held_for_its_save() -> None:
    log_ = EventLog("s")
    log_.emit("session_start", {})
    done = log_.emit("done", {}, publish=False)  # the turn's done, saved before it is seen
    log_.emit("lifecycle", {"action": "paused"})  # a pause lands meanwhile
    assert [e[1] for e in log_.since(0)] == ["session_start"]
    log_.publish(done)
    assert [e[1] for e in log_.since(0)] == ["session_start", "done", "lifecycle"]
    got = []
    async for batch in follow(log_, 0, heartbeat_s=0.01):
        got += [e[1] for e in batch]
    assert got == ["session_start", "done"]  # the stream of the turn still ends at done


async def test_numbers_left_unused_are_read_past_in_few_reads() -> None:
    # A worker lost right after it left numbers unused (a continued turn's gap), before
    # it numbered anything: the open turn below the gap is still found, and quickly.
    rows = records(["session_start", "message"])
    reads: list[int] = []
    inner = reader(rows)

    async def read(after: int, limit: int) -> list[EventRecord]:
        reads.append(after)
        return await inner(after, limit)

    assert await turn_open(read, 2 + 10_000)
    assert len(reads) < 12  # windows double across the gap (10,000 / 32 would be 313)
