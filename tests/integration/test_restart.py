"""The whole server (and its Ray cluster) goes away and comes back on the same data dir."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ash_ray.testing.ports import free_port
from tests.integration.conftest import MODEL_KEY
from tests.integration.server_proc import AshProcess
from tests.integration.sse import frames, new_session, send

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture()
def proc(tmp_path: Path, fake_model) -> Iterator[AshProcess]:  # type: ignore[no-untyped-def]
    env = {
        "ANTHROPIC_BASE_URL": fake_model.url,
        "ANTHROPIC_API_KEY": MODEL_KEY,
        "ASH_WARM_POOL_SIZE": "0",
        "ASH_NAMESPACE": "ash-restart",
        "ASH_DRAIN_TIMEOUT_S": "20",
    }
    p = AshProcess(tmp_path / "data", free_port(run=2), env)
    yield p
    p.kill()


def test_sigterm_drains_and_sigkill_loses_nothing(
    proc: AshProcess, agent_dir: Path, fake_model  # type: ignore[no-untyped-def]
) -> None:
    proc.start()
    with httpx.Client(base_url=proc.url, timeout=60) as http:
        deployed = http.post("/api/agents", json={"name": "a", "path": str(agent_dir)})
        assert deployed.status_code == 201
        sid = new_session(http, "a")
        send(http, sid, f"TOOL Write {json.dumps({'file_path': 'kiwi.txt', 'content': 'kiwi'})}")
        send(http, sid, "remember kiwi")
    assert proc.terminate() == 0  # graceful: drained within the grace period

    proc.start()
    with httpx.Client(base_url=proc.url, timeout=60) as http:
        assert http.get(f"/api/sessions/{sid}").json()["session"]["status"] == "paused"
        fake_model.reset()
        cat = send(http, sid, f"TOOL Bash {json.dumps({'command': 'cat kiwi.txt'})}")
        assert "kiwi" in json.dumps(next(f[2] for f in cat if f[1] == "tool_result"))
        assert "remember kiwi" in json.dumps(fake_model.message_requests[0]["messages"])
        count_before = len(http.get(f"/api/sessions/{sid}/messages").json()["messages"])

        # The reply streams its text, then waits before message_stop: mid-turn at the kill.
        with fake_model.hold("slow", at="message_stop"), http.stream(
            "POST", f"/api/sessions/{sid}/messages",
            json={"content": "slow " * 30, "includePartialMessages": True},
        ) as r:
            seen = []
            for frame in frames(r.iter_lines()):
                seen.append(frame)
                if len(seen) == 3:
                    proc.kill()  # SIGKILL the server and its whole Ray cluster mid-stream
                    break

    proc.start()
    with httpx.Client(base_url=proc.url, timeout=60) as http:
        session = http.get(f"/api/sessions/{sid}").json()["session"]
        assert session["status"] == "paused"  # it died mid-turn: paused, resumable
        timeline = http.get(f"/api/sessions/{sid}/events").json()["events"]
        assert timeline[-1]["type"] == "error", timeline[-3:]
        assert "died" in json.loads(timeline[-1]["data"])["error"]
        # A re-attach to the cut-off turn ends at once with the same events.
        with http.stream("GET", f"/api/sessions/{sid}/stream",
                         headers={"Last-Event-ID": str(timeline[-1]["sequence"] - 1)}) as r:
            tail = list(frames(r.iter_lines()))
        assert [f[1] for f in tail] == ["error", "done"]
        msgs = http.get(f"/api/sessions/{sid}/messages").json()["messages"]
        assert len(msgs) >= count_before
        assert any("remember kiwi" in m["content"] for m in msgs)
        fake_model.reset()
        after = send(http, sid, "still there?")
        assert after[-1][1] == "done" and any(f[1] == "turn_complete" for f in after)
        history = json.dumps(fake_model.message_requests[0]["messages"])
        assert "remember kiwi" in history
        cat = send(http, sid, f"TOOL Bash {json.dumps({'command': 'cat kiwi.txt'})}")
        assert "kiwi" in json.dumps(next(f[2] for f in cat if f[1] == "tool_result"))
