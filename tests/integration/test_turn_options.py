"""Options a client sends with a message reach the model (none is accepted and dropped)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ash_ray.pipeline import connect
from tests.integration.sse import new_session, send

pytestmark = pytest.mark.ray

THINKING = {"type": "enabled", "budget_tokens": 1024}


def test_extended_thinking_reaches_the_model_over_http(
    http: httpx.Client, agent: str, fake_model: Any
) -> None:
    sid = new_session(http, agent)
    fake_model.reset()
    frames = send(http, sid, "think first", thinking=THINKING)
    assert frames[-1][1] == "done"
    assert fake_model.message_requests[0].get("thinking") == THINKING
    fake_model.reset()
    send(http, sid, "no thinking this time")
    assert "thinking" not in fake_model.message_requests[0]


def test_extended_thinking_reaches_the_model_from_a_ray_driver(
    server: str, agent: str, fake_model: Any
) -> None:
    with connect().session(agent) as session:
        fake_model.reset()
        out = session.run("think from ray", thinking=THINKING)
        assert out["error"] is None
        assert fake_model.message_requests[0].get("thinking") == THINKING
