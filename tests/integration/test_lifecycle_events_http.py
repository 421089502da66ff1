"""Issue 11: the timeline's ``lifecycle`` entries over HTTP with Ash's own client, on
SQLite and Postgres; and the message route's own body limit.

One session goes through its life (created, a turn, paused, resumed warm, stopped,
resumed cold by a message, forked, ended); ``GET .../events?type=lifecycle`` lists it in
order and in one numbering with the turns, the turns' streams carry no lifecycle event,
and a replay of the whole log still ends at the last turn's ``done``.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from uuid import UUID

import httpx
import pytest
from ash_sdk.api.sessions import get_api_sessions_id_events
from ash_sdk.ash_client import AshClient
from ash_sdk.client import AuthenticatedClient

from ash_ray.testing.fake_anthropic import FakeAnthropic
from tests.integration.conftest import API_KEY, Target
from tests.integration.sse import frames, new_session, send

pytestmark = pytest.mark.ray

MIB = 1024 * 1024


def timeline(http: httpx.Client, sid: str, kind: str | None = None) -> list[tuple[int, str, dict]]:
    """(sequence, type, data) of the timeline, read with Ash's generated module."""
    client = AuthenticatedClient(base_url=str(http.base_url).rstrip("/"), token=API_KEY)
    got = get_api_sessions_id_events.sync(
        UUID(sid), client=client, limit=1000, **({"type_": kind} if kind else {})
    )
    return [(e.sequence, e.type_, json.loads(e.data)) for e in got.events]  # type: ignore[union-attr]


def actions(entries: list[tuple[int, str, dict]]) -> list[str]:
    return [data["action"] for _, _, data in entries]


def test_a_sessions_life_is_in_its_timeline_in_order(target: Target) -> None:
    http = target.http
    client = AshClient(str(http.base_url).rstrip("/"), token=API_KEY)
    sid = str(client.create_session(target.agent).id)
    first = send(http, sid, "hello")
    client.pause_session(sid)
    client.resume_session(sid)  # warm: the same worker
    client.stop_session(sid)
    second = send(http, sid, "again")  # resumes cold, from the stored snapshot
    for turn in (first, second):  # a turn's stream is the turn's events only
        assert turn[0][1] == "session_start" and turn[-1][1] == "done"
        assert "lifecycle" not in [event for _, event, _ in turn]
    child = str(client.fork_session(sid).id)
    client.end_session(sid)  # Ash's client: stop, then DELETE (ended while cold)

    entries = timeline(http, sid, "lifecycle")
    assert actions(entries) == [
        "created", "paused", "resumed", "stopped", "resumed", "stopped", "ended",
    ]  # fmt: skip
    data = [d for _, _, d in entries]
    assert data[0]["agentName"] == target.agent and "model" in data[0]
    assert (data[2]["path"], data[2]["source"]) == ("warm", "sandbox")
    assert (data[4]["path"], data[4]["source"]) == ("cold", "store")
    # One numbering with the turns: each entry where it happened.
    everything = timeline(http, sid)
    seqs = [seq for seq, _, _ in everything]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    order = [d["action"] if t == "lifecycle" else t for _, t, d in everything if t in (
        "lifecycle", "turn_complete")]  # fmt: skip
    assert order == [
        "created", "turn_complete", "paused", "resumed", "stopped", "resumed",
        "turn_complete", "stopped", "ended",
    ]  # fmt: skip
    assert entries[0][0] < first[0][0] and entries[4][0] < second[0][0]

    # The fork: the parent's log up to the fork, then "forked" naming the parent.
    forked = timeline(http, child, "lifecycle")
    assert actions(forked) == ["created", "paused", "resumed", "stopped", "resumed", "forked"]
    assert forked[-1][2]["parentSessionId"] == sid
    assert forked[-1][0] > second[-1][0]  # numbered after the copied log

    # A replay of the whole stored log ends at the last turn's done; lifecycle events
    # show between turns, never inside one.
    with http.stream("GET", f"/api/sessions/{child}/stream", params={"after": 0}) as r:
        replay = list(frames(r.iter_lines()))
    kinds = [event for _, event, _ in replay]
    assert kinds.count("done") == 2 and kinds[-1] == "lifecycle"
    last_done = len(kinds) - 1 - kinds[::-1].index("done")
    assert replay[last_done][0] == second[-1][0]


def _pdf_message(decoded_bytes: int) -> dict[str, Any]:
    pdf = b"%PDF-1.4\n" + b"0" * (decoded_bytes - 9)
    return {"content": [
        {"type": "text", "text": "what is this?"},
        {"type": "document", "source": {
            "type": "base64", "media_type": "application/pdf",
            "data": base64.b64encode(pdf).decode(),
        }},
    ]}  # fmt: skip


def test_a_20_mib_message_reaches_the_model_and_bigger_bodies_are_413(
    http: httpx.Client, agent: str, fake_model: FakeAnthropic
) -> None:
    sid = new_session(http, agent)
    body = _pdf_message(15 * MIB)  # some 20 MiB of JSON: over the general 10 MiB limit
    with http.stream("POST", f"/api/sessions/{sid}/messages", json=body) as r:
        assert r.status_code == 200, r.read()
        turn = list(frames(r.iter_lines()))
    assert turn[-1][1] == "done" and "error" not in [e for _, e, _ in turn]
    sent = fake_model.message_requests[-1]["messages"][0]["content"]
    assert [b["type"] for b in sent] == ["text", "document"]
    assert sent[1]["source"]["data"] == body["content"][1]["source"]["data"]

    calls = len(fake_model.message_requests)
    r = http.post(f"/api/sessions/{sid}/messages", json=_pdf_message(30 * MIB))  # ~40 MiB
    assert r.status_code == 413
    assert r.json()["error"].endswith(f"over the {32 * MIB}-byte limit")
    assert len(fake_model.message_requests) == calls  # no turn started
    r = http.post(f"/api/sessions/{sid}/exec", json={"command": "x" * (12 * MIB)})
    assert r.status_code == 413
    assert r.json()["error"].endswith(f"over the {10 * MIB}-byte limit")
