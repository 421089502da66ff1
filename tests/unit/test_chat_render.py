"""How the terminal chat shows a turn's events (no server needed)."""

from __future__ import annotations

import io
import re

from rich.console import Console

from ash_ray.chat import advice
from ash_ray.chat_render import TurnView, frames


def render(events: list[tuple[int, str, dict]]) -> str:  # type: ignore[type-arg]
    buf = io.StringIO()
    view = TurnView(Console(file=buf, width=60, color_system=None))
    for event in events:
        view.show(event)
    return buf.getvalue()


def test_streamed_text_once_then_tool_panels_in_order() -> None:
    out = render([
        (1, "session_start", {}),
        (2, "text_delta", {"delta": "Let me "}),
        (3, "text_delta", {"delta": "look."}),
        (4, "message", {"type": "assistant", "message": {"content": [
            {"type": "text", "text": "Let me look."}]}}),
        (5, "tool_use", {"id": "t1", "name": "Bash", "input": {"command": "ls"}}),
        (6, "tool_result", {"tool_use_id": "t1", "content": "boom", "is_error": True}),
        (7, "message", {"type": "result", "subtype": "interrupted"}),
        (8, "turn_complete", {"result": "Let me look."}),
        (9, "done", {}),
    ])
    assert out.count("Let me look.") == 1
    assert out.index("Let me look.") < out.index("tool Bash") < out.index("Bash failed")
    assert '"command": "ls"' in out and "boom" in out
    assert "turn ended: interrupted" in out
    assert re.search(r"Let me look\. *\n╭─ tool Bash", out), "the text's line was not ended"


def test_whole_messages_when_nothing_streamed_and_replays_skip_seen_events() -> None:
    out = render([
        (1, "session_start", {}),
        (2, "message", {"type": "assistant", "message": {"content": [
            {"type": "text", "text": "no partials here"}]}}),
        (2, "message", {"type": "assistant", "message": {"content": [
            {"type": "text", "text": "no partials here"}]}}),
        (3, "error", {"error": "model overloaded"}),
        (4, "done", {}),
    ])
    assert out.count("no partials here") == 1
    assert "error: model overloaded" in out


def test_sse_frames_and_advice() -> None:
    lines = ["id: 3", "event: text_delta", 'data: {"delta":"hi"}', "", ": ping", ""]
    assert list(frames(iter(lines))) == [(3, "text_delta", {"delta": "hi"})]
    assert "upgrade ash-ray" in advice(404, "Not Found", "/api/x")
    assert "ash-ray session resume" in advice(400, "Session is paused", "/api/sessions/x")
    assert "ASH_API_KEY" in advice(401, "invalid API key", "/api/agents")
