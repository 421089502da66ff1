"""Pause, stop, resume (warm and cold), fork, end: conversation and files always kept."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import ray

from ash_ray.errors import WorkerReleasing
from ash_ray.names import REGISTRY_NAME, actor_name
from tests.helpers import wait_for
from tests.integration.conftest import Target
from tests.integration.sse import message_kinds, new_session, send

pytestmark = pytest.mark.ray


def _status(http: httpx.Client, sid: str) -> str:
    return str(http.get(f"/api/sessions/{sid}").json()["session"]["status"])


def _write_file(http: httpx.Client, sid: str, name: str, text: str) -> None:
    frames = send(http, sid, f"TOOL Write {json.dumps({'file_path': name, 'content': text})}")
    assert not next(f[2] for f in frames if f[1] == "tool_result")["is_error"]


def _cat(http: httpx.Client, sid: str, name: str) -> str:
    frames = send(http, sid, f"TOOL Bash {json.dumps({'command': f'cat {name}'})}")
    return json.dumps(next(f[2] for f in frames if f[1] == "tool_result")["content"])


def _serves(namespace: str, sandbox_id: str, sid: str) -> bool:
    """Whether the worker ``sandbox_id`` (gone, pooled, or serving another) serves ``sid``."""
    try:
        worker = ray.get_actor(actor_name(sandbox_id), namespace=namespace)
    except ValueError:
        return False
    try:
        return bool(ray.get(worker.describe.remote(for_session=sid)).get("bound"))
    except WorkerReleasing:
        return False


def _pool_settled(http: httpx.Client) -> None:
    wait_for(lambda: http.get("/health").json()["pool"]["warming"] == 0, 60, what="pool full")


def test_a_released_worker_serves_the_next_session_with_nothing_of_the_last(
    target: Target,
) -> None:
    http, agent = target.http, target.agent
    first = http.post("/api/sessions", json={"agent": agent}).json()["session"]
    a = first["id"]
    _write_file(http, a, "secret-a.txt", "only-for-a")
    _pool_settled(http)  # no refill lands after a's worker goes back: it is taken next
    http.post(f"/api/sessions/{a}/stop")
    second = http.post("/api/sessions", json={"agent": agent}).json()["session"]
    b = second["id"]
    assert second["sandboxId"] == first["sandboxId"] and b != a  # one process, two sessions
    seen = _cat(http, b, "secret-a.txt") + _cat(http, b, f"../{a}/secret-a.txt")
    assert "only-for-a" not in seen and "No such file" in seen
    assert "only-for-a" not in http.get(f"/api/sessions/{b}/messages").text  # a's prompt
    worker = ray.get_actor(actor_name(first["sandboxId"]), namespace=target.namespace)
    with pytest.raises(WorkerReleasing):  # a caller still holding a's handle reaches nothing
        ray.get(worker.exec.remote("cat secret-a.txt", None, for_session=a))
    assert not _serves(target.namespace, first["sandboxId"], a)
    assert "only-for-a" in _cat(http, a, "secret-a.txt")  # a resumes on a worker of its own
    resumed = http.get(f"/api/sessions/{a}").json()["session"]
    assert resumed["sandboxId"] != first["sandboxId"]
    for sid in (a, b):
        http.delete(f"/api/sessions/{sid}")


def test_pause_then_resume_is_warm(target: Target) -> None:
    http, agent = target.http, target.agent
    sid = new_session(http, agent)
    before = http.get("/health").json()["pool"]["resumeWarmHits"]
    assert http.post(f"/api/sessions/{sid}/pause").json()["session"]["status"] == "paused"
    assert http.post(f"/api/sessions/{sid}/pause").status_code == 409  # already paused
    assert http.post(f"/api/sessions/{sid}/resume").json()["session"]["status"] == "active"
    assert http.get("/health").json()["pool"]["resumeWarmHits"] == before + 1
    assert send(http, sid, "after pause")[-1][1] == "done"


def test_stop_then_cold_resume_keeps_conversation_and_files(
    target: Target, fake_model  # type: ignore[no-untyped-def]
) -> None:
    http, agent = target.http, target.agent
    sid = new_session(http, agent)
    _write_file(http, sid, "kept.txt", "precious-bytes")
    send(http, sid, "remember the word tangerine")
    stopped = http.post(f"/api/sessions/{sid}/stop").json()["session"]
    assert stopped["status"] == "stopped"
    assert not _serves(target.namespace, stopped["sandboxId"], sid)
    cold_before = http.get("/health").json()["pool"]["resumeColdHits"]

    resumed = http.post(f"/api/sessions/{sid}/resume").json()["session"]
    assert resumed["status"] == "active" and resumed["id"] == sid
    assert http.get("/health").json()["pool"]["resumeColdHits"] == cold_before + 1
    fake_model.reset()
    send(http, sid, "what was the word?")
    sent = fake_model.message_requests[-1]["messages"]
    texts = json.dumps(sent)
    assert "remember the word tangerine" in texts and "echo: remember the word" in texts
    assert sent[-1]["role"] == "user"  # the prompt, marked as a cache breakpoint
    assert sent[-1]["content"][0]["text"] == "what was the word?"
    assert "precious-bytes" in _cat(http, sid, "kept.txt")
    assert 'ash_resume_total{path="cold"}' in http.get("/metrics").text


def test_message_to_a_stopped_session_resumes_it(target: Target) -> None:
    http, agent = target.http, target.agent
    sid = new_session(http, agent)
    send(http, sid, "one")
    http.post(f"/api/sessions/{sid}/stop")
    frames = send(http, sid, "two")
    assert frames[-1][1] == "done" and _status(http, sid) == "active"
    assert message_kinds(http, sid) == ["user", "assistant", "result"] * 2


def test_fork_copies_conversation_and_workspace(target: Target) -> None:
    http, agent = target.http, target.agent
    sid = new_session(http, agent)
    _write_file(http, sid, "data.txt", "parent-data")
    r = http.post(f"/api/sessions/{sid}/fork")
    assert r.status_code == 201
    child = r.json()["session"]
    assert child["parentSessionId"] == sid and child["id"] != sid
    parent_msgs = http.get(f"/api/sessions/{sid}/messages").json()["messages"]
    child_msgs = http.get(f"/api/sessions/{child['id']}/messages").json()["messages"]
    assert [m["content"] for m in child_msgs] == [m["content"] for m in parent_msgs]
    assert "parent-data" in _cat(http, child["id"], "data.txt")
    # The copies are independent.
    _write_file(http, child["id"], "data.txt", "child-data")
    assert "parent-data" in _cat(http, sid, "data.txt")


def test_end_is_terminal_and_allowed_after_stop(target: Target) -> None:
    http, agent = target.http, target.agent
    sid = new_session(http, agent)
    http.post(f"/api/sessions/{sid}/stop")
    ended = http.delete(f"/api/sessions/{sid}")
    assert ended.status_code == 200 and ended.json()["session"]["status"] == "ended"
    assert http.post(f"/api/sessions/{sid}/resume").status_code == 410
    assert http.post(f"/api/sessions/{sid}/fork").status_code == 410
    assert http.delete(f"/api/sessions/{sid}").status_code == 410


def test_patch_config_changes_the_model(
    target: Target, fake_model  # type: ignore[no-untyped-def]
) -> None:
    http, agent = target.http, target.agent
    sid = new_session(http, agent)
    r = http.patch(f"/api/sessions/{sid}/config", json={"model": "claude-test-patched"})
    assert r.status_code == 200
    send(http, sid, "which model?")
    assert fake_model.message_requests[-1]["model"] == "claude-test-patched"
    send(http, sid, "override", model="claude-per-message")
    assert fake_model.message_requests[-1]["model"] == "claude-per-message"


def test_concurrent_lifecycle_calls_one_wins(target: Target) -> None:
    http, agent = target.http, target.agent
    sid = new_session(http, agent)
    http.post(f"/api/sessions/{sid}/stop")
    calls = ["resume", "resume", "resume", "pause"]

    def call(verb: str) -> int:
        return http.post(f"/api/sessions/{sid}/{verb}").status_code

    with ThreadPoolExecutor(len(calls)) as pool:
        codes = list(pool.map(call, calls))
    assert codes.count(200) >= 1, codes
    assert all(c in (200, 409) for c in codes), codes
    assert _status(http, sid) in ("active", "paused")
    with ThreadPoolExecutor(3) as pool:
        ends = list(pool.map(lambda _: http.delete(f"/api/sessions/{sid}").status_code, range(3)))
    assert sorted(ends)[0] == 200 and ends.count(200) == 1, ends
    assert all(c in (200, 409, 410) for c in ends), ends
    assert _status(http, sid) == "ended"


def test_idle_sessions_are_swept_cold(target: Target) -> None:
    http, agent = target.http, target.agent
    sid = new_session(http, agent)
    send(http, sid, "soon idle")
    registry = ray.get_actor(REGISTRY_NAME, namespace=target.namespace)
    swept = ray.get(registry.sweep.remote(idle_timeout_s=0.0))
    assert swept >= 1
    session = http.get(f"/api/sessions/{sid}").json()["session"]
    assert session["status"] == "paused"
    assert not _serves(target.namespace, session["sandboxId"], sid)
    assert send(http, sid, "back again")[-1][1] == "done"
