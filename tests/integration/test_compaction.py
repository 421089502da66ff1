"""A long session compacts when the model refuses its length, and a cold resume keeps it."""

from __future__ import annotations

import json

import httpx
import pytest

from ash_ray.testing.fake_anthropic import FakeAnthropic
from tests.integration.sse import new_session, send

pytestmark = pytest.mark.ray


def prompt(n: int) -> str:
    return f"request {n}: " + f"detail-{n} " * 40


def test_compaction_then_cold_resume_remembers_summary_and_recent_turns(
    http: httpx.Client, agent: str, fake_model: FakeAnthropic
) -> None:
    sid = new_session(http, agent)
    for n in range(8):
        assert send(http, sid, prompt(n))[-1][1] == "done"
    # The server's settings think the window is 200k; the model says it is smaller.
    fake_model.configure(context_window_tokens=2000)
    frames = send(http, sid, prompt(8))
    compact = [data for _, kind, data in frames if kind == "compact"]
    assert [c["trigger"] for c in compact] == ["prompt_too_long"], frames
    assert compact[0]["summarizedTurns"] >= 1 and "request 0" in compact[0]["summary"]
    result = next(d for _, k, d in frames if k == "message" and d.get("type") == "result")
    assert result["subtype"] == "success" and result["result"].startswith("echo: request 8")

    assert http.post(f"/api/sessions/{sid}/stop").json()["session"]["status"] == "stopped"
    assert http.post(f"/api/sessions/{sid}/resume").json()["session"]["status"] == "active"
    fake_model.reset()  # forgets requests (and the small window)
    assert send(http, sid, "what did I ask first?")[-1][1] == "done"
    sent = fake_model.message_requests[-1]["messages"]
    assert "Summary of the earlier conversation" in sent[0]["content"][0]["text"]
    assert "request 0" in sent[0]["content"][0]["text"]
    texts = json.dumps(sent)
    assert prompt(8) in texts and prompt(7) in texts  # the recent turns, verbatim
    assert prompt(0) not in texts  # the old ones only through the summary

    # The timeline keeps the compact event; the message history keeps everything.
    events = http.get(f"/api/sessions/{sid}/events").json()
    assert "compact" in json.dumps(events)
    history = json.dumps(http.get(f"/api/sessions/{sid}/messages?limit=1000").json())
    assert all(json.dumps(prompt(n))[1:-1] in history for n in range(9))


def test_compact_on_demand_over_http(
    http: httpx.Client, agent: str, fake_model: FakeAnthropic
) -> None:
    sid = new_session(http, agent)
    # Nothing to summarize yet: a clear answer, not an error.
    first = http.post(f"/api/sessions/{sid}/compact")
    assert first.status_code == 200, first.text
    assert first.json()["compacted"] is False
    for n in range(6):
        assert send(http, sid, prompt(n))[-1][1] == "done"
    r = http.post(f"/api/sessions/{sid}/compact")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["compacted"] is True and body["compact"]["trigger"] == "manual"
    assert body["compact"]["summarizedTurns"] >= 1 and "request 0" in body["compact"]["summary"]
    # The next turn starts from the summary, not from the old turns.
    fake_model.reset()
    assert send(http, sid, "go on")[-1][1] == "done"
    texts = json.dumps(fake_model.message_requests[-1]["messages"])
    assert "Summary of the earlier conversation" in texts and prompt(0) not in texts
    events = http.get(f"/api/sessions/{sid}/events").json()["events"]
    compacts = [json.loads(e["data"]) for e in events if e["type"] == "lifecycle"]
    compacts = [c for c in compacts if c.get("action") == "compacted"]
    assert [c["trigger"] for c in compacts] == ["manual"]


def test_compact_is_refused_while_a_turn_runs(
    http: httpx.Client, agent: str, fake_model: FakeAnthropic
) -> None:
    sid = new_session(http, agent)
    with fake_model.hold("held for compact") as hold, http.stream(
        "POST", f"/api/sessions/{sid}/messages", json={"content": "held for compact"}
    ) as r:
        assert r.status_code == 200
        hold.wait_seen()
        busy = http.post(f"/api/sessions/{sid}/compact")
        assert busy.status_code == 409 and "running a turn" in busy.json()["error"]
        hold.release()
        r.read()
