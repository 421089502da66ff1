"""Follow-ups that queue, and turns that survive the loss of their worker (issue 13).

Over HTTP: ``ifBusy`` (queue / reject / interrupt) on a real Serve app; a session worker
killed (SIGKILL) while its tool runs, whose turn continues on a new worker in the same
stream. From a Ray driver: asks fired at a busy session queue instead of failing.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import ray

from ash_ray.names import REGISTRY_NAME
from ash_ray.pipeline import connect
from ash_ray.session.recovery import LOST_TOOL
from tests.helpers import wait_for
from tests.integration.sse import Frame, frames, kinds, new_session, send

pytestmark = pytest.mark.ray

# A tool call that waits in the sandbox until `go` exists in the workspace: an explicit
# latch holding a turn open (nothing here creates `go`; the worker is killed instead).
HOLD = 'TOOL Bash {"command": "until [ -f go ]; do sleep 0.05; done; echo released"}'

def _worker_pid(sid: str, namespace: str) -> int:
    registry = ray.get_actor(REGISTRY_NAME, namespace=namespace)
    handle = ray.get(registry.live_handle.remote(sid))
    return int(ray.get(handle.describe.remote())["pid"])


def _stream(http: httpx.Client, sid: str, body: dict[str, Any],
            started: threading.Event | None = None) -> list[Frame]:
    with http.stream("POST", f"/api/sessions/{sid}/messages", json=body) as r:
        assert r.status_code == 200, r.read()
        if started is not None:
            started.set()  # the response began: the turn of this message has started
        return list(frames(r.iter_lines()))


def _types(got: list[Frame]) -> list[str]:
    return [f[1] for f in got]


def test_if_busy_queue_waits_for_the_running_turn_and_reject_is_409(
    http: httpx.Client, agent: str, fake_model: Any, settings: Any
) -> None:
    sid = new_session(http, agent)
    with ThreadPoolExecutor(2) as pool, fake_model.hold("first-of-two") as hold:
        first = pool.submit(_stream, http, sid, {"content": "first-of-two"})
        hold.wait_held()
        refused = http.post(f"/api/sessions/{sid}/messages", json={"content": "no thanks"})
        assert refused.status_code == 409, refused.text  # reject stays the HTTP default
        began = threading.Event()
        second: Future[list[Frame]] = pool.submit(
            _stream, http, sid, {"content": "second-of-two", "ifBusy": "queue"}, began
        )
        # Stored before it is acknowledged, then waiting: no response while turn 1 runs.
        wait_for(lambda: _queued(settings, sid) == ["second-of-two"], what="the queued row")
        assert not began.is_set()
        hold.release()
        got1, got2 = first.result(60), second.result(60)
    assert _types(got1)[-1] == "done" and _types(got2)[-1] == "done", (got1, got2)
    assert got2[0][1] == "session_start" and got2[0][0] > got1[-1][0]  # its own turn, after
    assert any("echo: second-of-two" in json.dumps(f[2]) for f in got2)
    msgs = http.get(f"/api/sessions/{sid}/messages").json()["messages"]
    assert kinds(msgs) == ["user", "assistant", "result"] * 2
    assert _queued(settings, sid) == []


def test_if_busy_interrupt_stops_the_running_turn_then_runs(
    http: httpx.Client, agent: str, fake_model: Any
) -> None:
    sid = new_session(http, agent)
    with ThreadPoolExecutor(1) as pool, fake_model.hold("long-running") as hold:
        first = pool.submit(_stream, http, sid, {"content": "long-running"})
        hold.wait_held()
        got2 = _stream(http, sid, {"content": "change of plan", "ifBusy": "interrupt"})
        got1 = first.result(60)
    result1 = next(f[2] for f in got1 if f[1] == "message" and f[2].get("type") == "result")
    assert result1["subtype"] == "interrupted" and _types(got1)[-1] == "done", got1[-3:]
    assert _types(got2)[0] == "session_start" and got2[0][0] > got1[-1][0]
    assert _types(got2)[-1] == "done"
    assert any("echo: change of plan" in json.dumps(f[2]) for f in got2)
    msgs = http.get(f"/api/sessions/{sid}/messages").json()["messages"]
    prompts = [m["content"] for m in msgs if json.loads(m["content"])["type"] == "user"]
    assert [("long-running" in p, "change of plan" in p) for p in prompts] == [
        (True, False), (False, True)
    ], prompts


def _queued(settings: Any, sid: str) -> list[str]:
    registry = ray.get_actor(REGISTRY_NAME, namespace=settings.namespace)
    rows = ray.get(registry.list_turns.remote(sid))
    return [row.prompt for row in rows if row.state == "queued"]


def test_worker_killed_while_its_tool_runs_the_turn_continues_in_the_same_stream(
    http: httpx.Client, agent: str, settings: Any
) -> None:
    sid = new_session(http, agent)
    send(http, sid, "before the crash")
    pid = _worker_pid(sid, settings.namespace)
    command = "TOOL Bash " + json.dumps({"command": "sleep 20 # recovery-test"})
    got: list[Frame] = []
    with http.stream("POST", f"/api/sessions/{sid}/messages", json={"content": command}) as r:
        for frame in frames(r.iter_lines()):
            got.append(frame)
            if frame[1] == "tool_use":
                # The tool runs now; kill once its call is stored (the step to keep).
                wait_for(lambda: _stored_types(http, sid)[-1:] == ["tool_start"],
                         what="the tool_use event stored")
                os.kill(pid, signal.SIGKILL)
    types = _types(got)
    assert types[-1] == "done" and "error" not in types, got[-4:]
    seqs = [f[0] for f in got]
    assert seqs == sorted(set(seqs)), seqs  # one numbering across both workers
    lost = [f[2] for f in got if f[1] == "tool_result"]
    assert len(lost) == 1 and lost[0]["is_error"] and lost[0]["content"] == LOST_TOOL
    assert types.count("turn_complete") == 1
    assert _worker_pid(sid, settings.namespace) != pid
    session = http.get(f"/api/sessions/{sid}").json()["session"]
    assert session["status"] == "active"
    msgs = http.get(f"/api/sessions/{sid}/messages").json()["messages"]
    # prompt, reply; prompt, tool call (kept), lost tool's result, the model's new answer
    # (Agent SDK shapes: each turn ends with its result message)
    assert kinds(msgs) == [
        "user", "assistant", "result", "user", "assistant", "user", "assistant", "result"
    ]
    assert "before the crash" in msgs[0]["content"]
    assert "tool said: the session's worker" in msgs[-1]["content"]
    # The stored log has the continuation in the stream's numbering.
    with http.stream("GET", f"/api/sessions/{sid}/stream",
                     headers={"Last-Event-ID": str(seqs[0] - 1)}) as r:
        assert [f[0] for f in frames(r.iter_lines())] == seqs
    # Re-attaching with Last-Event-ID replays the rest from the store, same numbering.
    with http.stream("GET", f"/api/sessions/{sid}/stream",
                     headers={"Last-Event-ID": str(seqs[2])}) as r:
        assert [f[0] for f in frames(r.iter_lines())] == seqs[3:]


def test_a_queued_message_survives_a_worker_restart_and_runs_once(
    http: httpx.Client, agent: str, settings: Any
) -> None:
    sid = new_session(http, agent)
    send(http, sid, "before the crash")
    pid = _worker_pid(sid, settings.namespace)
    queued = "queued across the crash"
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(_stream, http, sid, {"content": HOLD})
        wait_for(lambda: _stored_types(http, sid)[-1:] == ["tool_start"],
                 what="the held tool call stored")
        second = pool.submit(_stream, http, sid, {"content": queued, "ifBusy": "queue"})
        wait_for(lambda: _queued(settings, sid) == [queued], what="the queued row")
        os.kill(pid, signal.SIGKILL)
        got1, got2 = first.result(120), second.result(120)
    # The held turn continues on the new worker; the lost tool is not run again.
    assert _types(got1)[-1] == "done" and "error" not in _types(got1), got1[-4:]
    lost = [f[2] for f in got1 if f[1] == "tool_result"]
    assert len(lost) == 1 and lost[0]["content"] == LOST_TOOL, lost
    # The queued message's caller (its call re-sent to the new worker) gets its own
    # turn, after the continued one, answered once.
    assert _types(got2)[0] == "session_start" and got2[0][0] > got1[-1][0], got2[:2]
    assert _types(got2)[-1] == "done" and "error" not in _types(got2), got2[-4:]
    results2 = [f[2] for f in got2 if f[1] == "message" and f[2].get("type") == "result"]
    assert [r["result"] for r in results2] == [f"echo: {queued}"], results2
    assert _types(got2).count("session_start") == 1
    assert _worker_pid(sid, settings.namespace) != pid
    msgs = http.get(f"/api/sessions/{sid}/messages").json()["messages"]
    prompts = [m["content"] for m in msgs if json.loads(m["content"])["type"] == "user"]
    assert sum(queued in p for p in prompts) == 1, prompts
    assert kinds(msgs) == [
        "user", "assistant", "result",  # before the crash
        "user", "assistant", "user", "assistant", "result",  # held, continued
        "user", "assistant", "result",  # the queued message, once
    ]
    wait_for(lambda: ray.get(ray.get_actor(REGISTRY_NAME, namespace=settings.namespace)
                             .list_turns.remote(sid)) == [], what="the turn queue emptied")


def _stored_types(http: httpx.Client, sid: str) -> list[str]:
    return [e["type"] for e in http.get(f"/api/sessions/{sid}/events").json()["events"]]


def test_ray_native_asks_at_a_busy_session_queue_in_order(
    server: str, agent: str, settings: Any
) -> None:
    ash = connect(namespace=settings.namespace)
    with ash.session(agent) as session:
        refs = [session.ask.remote(f"queued question {i}") for i in range(3)]
        outcomes = ray.get(refs, timeout=120)
        assert [o["error"] for o in outcomes] == [None] * 3
        assert [o["result"] for o in outcomes] == [f"echo: queued question {i}" for i in range(3)]
        history = ash.registry.list_messages(session.id, 0, 100).get(60)
        asked = [m.content for m in history if m.role == "user"]
        assert len(asked) == 3  # each ran once, as its own turn
