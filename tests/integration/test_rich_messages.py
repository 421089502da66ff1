"""Issue 11, rich messages and what clients read back, over HTTP with Ash's own client.

Images and PDFs reach the model as blocks and stay in the conversation across a cold
resume (SQLite and Postgres); bad blocks are refused with a 400 that names them; the
``message`` events and ``GET .../messages`` carry the Agent SDK's messages (stream
events, tool results with ``tool_use_result``), and the timeline speaks Ash's types.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from uuid import UUID

import httpx
import pytest
from ash_sdk.api.sessions import (
    get_api_sessions_id,
    get_api_sessions_id_events,
    get_api_sessions_id_messages,
)
from ash_sdk.ash_client import AshClient
from ash_sdk.client import AuthenticatedClient
from ash_sdk.streaming import MessageEvent, ToolResultEvent, TurnCompleteEvent

from ash_ray.testing.fake_anthropic import FakeAnthropic
from tests.integration.conftest import API_KEY, Target
from tests.integration.sse import new_session, send

pytestmark = pytest.mark.ray

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
PDF = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def image(data: str, media_type: str = "image/png") -> dict[str, Any]:
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


BLOCKS = [
    {"type": "text", "text": "what do you see?"},
    image(b64(PNG)),
    {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                    "data": b64(PDF)}},
]  # fmt: skip


def ash(http: httpx.Client) -> AuthenticatedClient:
    return AuthenticatedClient(base_url=str(http.base_url).rstrip("/"), token=API_KEY)


def test_blocks_reach_the_model_and_survive_a_cold_resume(
    target: Target, fake_model: FakeAnthropic
) -> None:
    http = target.http
    client = AshClient(str(http.base_url).rstrip("/"), token=API_KEY)
    session = client.create_session(target.agent)
    events = list(client.send_message_stream(session.id, BLOCKS))  # type: ignore[arg-type]
    done = [e for e in events if isinstance(e, TurnCompleteEvent)]
    assert done[0].result == "echo: what do you see? [saw: image/png, application/pdf]"
    sent = fake_model.message_requests[-1]["messages"][0]["content"]
    assert [b["type"] for b in sent] == ["text", "image", "document"]
    assert sent[1]["source"]["data"] == b64(PNG)

    # Stopped (the worker is gone), then resumed cold from the store: the next request
    # still carries the image and the PDF in its history.
    client.stop_session(session.id)
    client.resume_session(session.id)
    fake_model.reset()
    assert send(http, str(session.id), "and now?")[-1][1] == "done"
    history = fake_model.message_requests[-1]["messages"]
    assert [b["type"] for b in history[0]["content"]] == ["text", "image", "document"]
    assert history[0]["content"][2]["source"]["data"] == b64(PDF)

    # GET .../messages (Ash's generated module): the prompt as the SDK's user message.
    got = get_api_sessions_id_messages.sync(UUID(str(session.id)), client=ash(http))
    first = json.loads(got.messages[0].content)  # type: ignore[union-attr]
    assert first["type"] == "user" and first["message"]["content"] == BLOCKS


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ([image(b64(PNG), "image/bmp")], "'image/bmp' is not supported"),
        ([image(b64(PNG), "image/jpeg")], "not image/jpeg"),
        ([image("@@@not base64@@@")], "not valid base64"),
        ([{"type": "text", "text": "x"}] * 21, "21 blocks; at most 20"),
        ([{"type": "video", "source": {}}], "type must be text, image or document"),
    ],
    ids=["wrong-media-type", "bytes-not-media-type", "bad-base64", "too-many-blocks", "bad-type"],
)
def test_bad_blocks_are_refused_with_a_400_naming_them(
    http: httpx.Client, agent: str, fake_model: FakeAnthropic, content: Any, named: str
) -> None:
    sid = new_session(http, agent)
    r = http.post(f"/api/sessions/{sid}/messages", json={"content": content})
    assert r.status_code == 400, r.text
    assert named in r.json()["error"] and r.json()["statusCode"] == 400
    assert fake_model.message_requests == []  # no turn started
    assert get_api_sessions_id_messages.sync(UUID(sid), client=ash(http)).messages == []  # type: ignore[union-attr]


def test_sdk_messages_on_the_stream_and_in_history(
    http: httpx.Client, agent: str, fake_model: FakeAnthropic
) -> None:
    sid = new_session(http, agent, model="claude-test-model", allowedTools=["Bash", "Read"])
    client = AshClient(str(http.base_url).rstrip("/"), token=API_KEY)
    command = json.dumps({"command": "echo from-the-tool"})
    events = list(client.send_message_stream(sid, f"TOOL Bash {command}",
                                             include_partial_messages=True))
    messages = [e.data for e in events if isinstance(e, MessageEvent)]
    # extractStreamDelta's rule, on the live stream: the text deltas of stream_event messages.
    deltas = [
        m["event"]["delta"]["text"] for m in messages
        if m["type"] == "stream_event" and m["event"]["type"] == "content_block_delta"
        and m["event"]["delta"]["type"] == "text_delta"
    ]  # fmt: skip
    final = next(e for e in events if isinstance(e, TurnCompleteEvent)).result
    assert "".join(deltas) == final == "tool said: from-the-tool"
    # extractDisplayItems' rule: a user message with tool_use_result shows its stdout.
    (tool_user,) = [m for m in messages if m["type"] == "user" and "tool_use_result" in m]
    assert tool_user["tool_use_result"]["stdout"] == "from-the-tool"
    assert tool_user["tool_use_result"]["tool_name"] == "Bash"
    assert [e.content for e in events if isinstance(e, ToolResultEvent)] == ["from-the-tool"]

    # The same messages in history, without the stream events.
    stored = get_api_sessions_id_messages.sync(UUID(sid), client=ash(http), limit=1000)
    kinds = [json.loads(m.content)["type"] for m in stored.messages]  # type: ignore[union-attr]
    assert kinds == ["user", "assistant", "user", "assistant", "result"]
    live = [m for m in messages if m["type"] != "stream_event"]
    assert [json.loads(m.content) for m in stored.messages] == live  # type: ignore[union-attr]

    # The timeline in Ash's types, filtered with ?type= by Ash's generated module.
    starts = get_api_sessions_id_events.sync(UUID(sid), client=ash(http), type_="tool_start")
    (start,) = starts.events  # type: ignore[union-attr]
    assert start.type_ == "tool_start"
    assert json.loads(start.data)["toolName"] == "Bash"  # type: ignore[arg-type]
    timeline = get_api_sessions_id_events.sync(UUID(sid), client=ash(http))
    assert [e.type_ for e in timeline.events] == [  # type: ignore[union-attr]
        "lifecycle", "tool_start", "tool_result", "text", "turn_complete",
    ]  # fmt: skip
    assert json.loads(timeline.events[0].data)["action"] == "created"  # type: ignore[arg-type,index,union-attr]

    # The session JSON carries model and config.
    got = get_api_sessions_id.sync(UUID(sid), client=ash(http))
    extra = got.session.additional_properties  # type: ignore[union-attr]
    assert extra["model"] == "claude-test-model"
    assert extra["config"]["allowedTools"] == ["Bash", "Read"]
