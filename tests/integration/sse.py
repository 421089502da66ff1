"""A small SSE reader for tests: frames as (id, event, data)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

Frame = tuple[int, str, dict[str, Any]]


def frames(lines: Iterator[str]) -> Iterator[Frame]:
    seq, event, data = None, "message", None
    for line in lines:
        if line.startswith("id: "):
            seq = int(line[4:])
        elif line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and data is not None:
            assert seq is not None, "every event must carry an id"
            yield seq, event, data
            seq, event, data = None, "message", None


def send(http: httpx.Client, session_id: str, content: str, **body: Any) -> list[Frame]:
    with http.stream(
        "POST", f"/api/sessions/{session_id}/messages", json={"content": content, **body}
    ) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        return list(frames(r.iter_lines()))


def new_session(http: httpx.Client, agent: str, **body: Any) -> str:
    r = http.post("/api/sessions", json={"agent": agent, **body})
    assert r.status_code == 201, r.text
    return str(r.json()["session"]["id"])


def message_kinds(http: httpx.Client, session_id: str) -> list[str]:
    """The Agent SDK message types of ``GET .../messages``, in order."""
    msgs = http.get(f"/api/sessions/{session_id}/messages").json()["messages"]
    return [json.loads(m["content"])["type"] for m in msgs]
