"""A client that goes away mid-turn misses nothing: the turn runs on, re-attach resumes."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.helpers import wait_for
from tests.integration.sse import frames, new_session

pytestmark = pytest.mark.ray

LONG = " ".join(f"word{i}" for i in range(40))


def test_disconnect_then_reattach_gets_every_event_once(
    http: httpx.Client, agent: str, fake_model  # type: ignore[no-untyped-def]
) -> None:
    sid = new_session(http, agent)
    seen = []
    # The reply stops after its second delta until the client has gone and come back:
    # the re-attach always meets the turn running.
    with fake_model.hold(LONG, at="token:2") as hold:
        with http.stream(
            "POST",
            f"/api/sessions/{sid}/messages",
            json={"content": LONG, "includePartialMessages": True},
        ) as r:
            for frame in frames(r.iter_lines()):
                seen.append(frame)
                if frame[1] == "text_delta":
                    break  # the client goes away mid-turn
        last_id = seen[-1][0]
        with http.stream(
            "GET", f"/api/sessions/{sid}/stream", headers={"Last-Event-ID": str(last_id)}
        ) as r:
            assert r.status_code == 200
            assert not hold.released
            hold.release()
            rest = list(frames(r.iter_lines()))
    assert rest and rest[-1][1] == "done"
    combined = [f[0] for f in seen] + [f[0] for f in rest]
    assert len(combined) == len(set(combined)), "an event was delivered twice"
    assert combined == list(range(combined[0], combined[-1] + 1)), "an event was lost"
    text = "".join(f[2]["delta"] for f in seen + rest if f[1] == "text_delta")
    assert text == f"echo: {LONG}"

    # The turn finished although nobody was listening to the first stream.
    events = http.get(f"/api/sessions/{sid}/events").json()["events"]
    assert [e["type"] for e in events] == ["lifecycle", "text", "turn_complete"]  # created
    assert {e["sequence"] for e in events[1:]} <= set(combined)
    replay = http.get(f"/api/sessions/{sid}/stream", params={"after": 0})
    assert [f[0] for f in frames(iter(replay.text.splitlines()))] == [
        events[0]["sequence"], *combined,
    ]  # fmt: skip


def test_turn_survives_client_disconnect(
    http: httpx.Client, agent: str, fake_model  # type: ignore[no-untyped-def]
) -> None:
    sid = new_session(http, agent)
    # The model answers only after the client hung up.
    with fake_model.hold("bye"):
        with http.stream("POST", f"/api/sessions/{sid}/messages", json={"content": "bye"}) as r:
            next(frames(r.iter_lines()))  # session_start only, then hang up

    def finished() -> bool:
        msgs = http.get(f"/api/sessions/{sid}/messages").json()["messages"]
        return [json.loads(m["content"])["type"] for m in msgs] == ["user", "assistant", "result"]

    wait_for(finished, timeout_s=20, what="the abandoned turn to finish")


def test_interrupt_stops_a_running_turn(
    http: httpx.Client, agent: str, fake_model  # type: ignore[no-untyped-def]
) -> None:
    sid = new_session(http, agent)
    # The reply stops after its first delta: only the interrupt can end the turn.
    with fake_model.hold(LONG, at="token:1", timeout_s=60) as hold:
        with http.stream(
            "POST", f"/api/sessions/{sid}/messages",
            json={"content": LONG, "includePartialMessages": True},
        ) as r:
            got = []
            for frame in frames(r.iter_lines()):
                got.append(frame)
                if frame[1] == "text_delta":
                    assert http.post(f"/api/sessions/{sid}/interrupt").json()["interrupted"]
        assert not hold.released, "the turn ended because the model finished, not the interrupt"
    result = next(f[2] for f in got if f[1] == "message" and f[2]["type"] == "result")
    assert result["subtype"] == "interrupted"
    assert got[-1][1] == "done"
    assert len([f for f in got if f[1] == "text_delta"]) == 1


def test_idle_streams_get_heartbeats(
    http: httpx.Client, agent: str, fake_model  # type: ignore[no-untyped-def]
) -> None:
    sid = new_session(http, agent)
    # The model stays silent until the stream has carried a heartbeat (the test server
    # beats every second); without heartbeats the hold times out and the assert fails.
    with fake_model.hold("hb", timeout_s=30) as hold:
        with http.stream("POST", f"/api/sessions/{sid}/messages", json={"content": "hb"}) as r:
            assert r.headers["x-accel-buffering"] == "no"
            lines = []
            for line in r.iter_lines():
                lines.append(line)
                if line == ": ping":
                    hold.release()
    assert ": ping" in lines
    assert lines[lines.index(": ping") - 1] == ""  # a comment between whole frames
