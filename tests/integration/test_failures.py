"""Kill things on the shared cluster: a session worker mid-turn, the registry itself."""

from __future__ import annotations

import json
import os
import re
import signal
import time

import httpx
import pytest
import ray

from ash_ray.names import REGISTRY_NAME
from tests.helpers import wait_for
from tests.integration.conftest import API_KEY, Target
from tests.integration.sse import frames, new_session, send

pytestmark = pytest.mark.ray


def _worker_pid(sid: str, namespace: str) -> int:
    registry = ray.get_actor(REGISTRY_NAME, namespace=namespace)
    handle = ray.get(registry.live_handle.remote(sid))
    return int(ray.get(handle.describe.remote())["pid"])


def test_sigkill_worker_mid_reply_calls_the_model_again_on_a_new_worker(
    target: Target, fake_model  # type: ignore[no-untyped-def]
) -> None:
    http, agent = target.http, target.agent
    sid = new_session(http, agent)
    send(http, sid, "before the crash")
    pid = _worker_pid(sid, target.namespace)
    got = []
    # The reply streams its text, then waits before message_stop: the turn is mid-way
    # whenever the kill lands. The hold catches one request: the model's second call
    # (on the new worker) answers at once.
    with fake_model.hold("a long answer", at="message_stop"):
        with http.stream(
            "POST", f"/api/sessions/{sid}/messages",
            json={"content": "a long answer " * 20, "includePartialMessages": True},
        ) as r:
            for frame in frames(r.iter_lines()):
                got.append(frame)
                if len(got) == 3:
                    os.kill(pid, signal.SIGKILL)
                    killed_at = time.monotonic()
        ended_after = time.monotonic() - killed_at
    # ASH_TURN_RECOVERY=continue (the default): the unfinished reply is asked again.
    assert got[-1][1] == "done" and not any(f[1] == "error" for f in got), got[-3:]
    assert ended_after < 30
    seqs = [f[0] for f in got]
    assert seqs == sorted(set(seqs))
    assert http.get(f"/api/sessions/{sid}").json()["session"]["status"] == "active"
    timeline = http.get(f"/api/sessions/{sid}/events").json()["events"]
    assert timeline[-1]["type"] == "turn_complete", timeline[-3:]
    assert not any(e["type"] == "error" for e in timeline), timeline
    texts = [m["content"] for m in http.get(f"/api/sessions/{sid}/messages").json()["messages"]]
    assert "before the crash" in texts[0]
    assert any("echo: a long answer" in t for t in texts), texts
    after = send(http, sid, "after the crash")
    assert after[-1][1] == "done"
    assert any(f[1] == "turn_complete" for f in after)


def test_registry_restart_loses_nothing(target: Target) -> None:
    http, agent = target.http, target.agent
    sid = new_session(http, agent)
    send(http, sid, "before the registry restart")
    registry = ray.get_actor(REGISTRY_NAME, namespace=target.namespace)
    old_pid = ray.get(registry.ping.remote())["pid"]
    ray.kill(registry, no_restart=False)

    def restarted() -> bool:
        try:
            return bool(ray.get(registry.ping.remote(), timeout=10)["pid"] != old_pid)
        except ray.exceptions.RayError:
            return False

    wait_for(restarted, timeout_s=60, what="the registry to restart")
    session = http.get(f"/api/sessions/{sid}").json()["session"]
    assert session["status"] == "active"  # its worker lived on and was adopted
    assert send(http, sid, "after the registry restart")[-1][1] == "done"
    msgs = http.get(f"/api/sessions/{sid}/messages").json()["messages"]
    # Agent SDK shapes: each turn is its prompt, the assistant reply and a result.
    kinds = [json.loads(m["content"])["type"] for m in msgs]
    assert kinds == ["user", "assistant", "result"] * 2, kinds
    assert "after the registry restart" in msgs[3]["content"]
    assert http.get("/health").json()["status"] == "ok"


@pytest.mark.postgres
def test_postgres_restart_during_turns_loses_nothing(
    pg_server: str, agent_dir, postgres_server, fake_model  # type: ignore[no-untyped-def]
) -> None:
    with httpx.Client(
        base_url=pg_server, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=120
    ) as http:
        http.post("/api/agents", json={"name": "helper", "path": str(agent_dir)})
        sids = [new_session(http, "helper") for _ in range(2)]
        # Both replies stream their text, then wait before message_stop until the
        # database has restarted: both turns are mid-way, written in part, at the restart.
        holds = [fake_model.hold(f"db-restart-{i}", at="message_stop") for i in range(2)]
        try:
            streams = []
            for i, sid in enumerate(sids):
                body = {"content": f"db-restart-{i} through a database restart " * 4,
                        "includePartialMessages": True}
                streams.append(http.stream("POST", f"/api/sessions/{sid}/messages", json=body))
            responses = [s.__enter__() for s in streams]
            for hold in holds:
                hold.wait_held()
            postgres_server.restart()
            for hold in holds:
                hold.release()
            results = [list(frames(r.iter_lines())) for r in responses]
            for s in streams:
                s.__exit__(None, None, None)
        finally:
            fake_model.release_all()
        for sid, got in zip(sids, results, strict=True):
            assert got[-1][1] == "done" and not any(f[1] == "error" for f in got)
            stored = http.get(f"/api/sessions/{sid}/stream", params={"after": 0}).text
            # the session's created entry (seq 1), then the turn as it was streamed
            assert [int(x) for x in re.findall(r"^id: (\d+)$", stored, re.M)] == [
                1, *(f[0] for f in got)
            ]
            msgs = http.get(f"/api/sessions/{sid}/messages").json()["messages"]
            # The prompt, the reply, the result: whole SDK messages.
            kinds = [json.loads(m["content"])["type"] for m in msgs]
            assert kinds == ["user", "assistant", "result"], kinds


def test_worker_killed_while_paused_resumes_cold_with_its_conversation(
    target: Target, fake_model  # type: ignore[no-untyped-def]
) -> None:
    """Warm resume is a flip in the registry, with no call to the worker: a worker that
    died while nobody used it must still be noticed, and the session resumed cold."""
    http, agent = target.http, target.agent
    sid = new_session(http, agent)
    send(http, sid, "remember the word teal")
    assert http.post(f"/api/sessions/{sid}/pause").status_code == 200
    pid = _worker_pid(sid, target.namespace)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not _alive(pid), what=f"worker {pid} to exit")
    cold_before = http.get("/health").json()["pool"]["resumeColdHits"]

    def resumed_cold() -> bool:
        r = http.post(f"/api/sessions/{sid}/resume")
        assert r.status_code == 200, r.text
        return bool(http.get("/health").json()["pool"]["resumeColdHits"] == cold_before + 1)

    # The registry learns of the death from its watch call within moments.
    wait_for(resumed_cold, timeout_s=10, what="a cold resume after the worker died")
    assert _worker_pid(sid, target.namespace) != pid
    fake_model.reset()
    assert send(http, sid, "which word?")[-1][1] == "done"
    sent = fake_model.message_requests[-1]["messages"]
    assert "remember the word teal" in json.dumps(sent)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_file_written_to_a_live_session_survives_its_worker(target: Target) -> None:
    """What the files API acknowledged is in the store: the session's next worker has it,
    though no turn ended after the upload."""
    http, agent = target.http, target.agent
    sid = new_session(http, agent)
    body = {"files": [{"path": "kept.txt", "content": "a2VwdAo="}], "targetPath": "in"}
    assert http.post(f"/api/sessions/{sid}/files", json=body).status_code == 200
    assert http.delete(f"/api/sessions/{sid}/files/notes.txt").status_code == 200
    pid = _worker_pid(sid, target.namespace)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not _alive(pid), what=f"worker {pid} to exit")

    # Read from its snapshot while cold, or from a new worker's workspace once resumed.
    kept = wait_for(lambda: (r := http.get(f"/api/sessions/{sid}/files/in/kept.txt"))
                    .status_code == 200 and r, timeout_s=30, what="the uploaded file")
    assert kept.content == b"kept\n", kept.headers
    assert http.get(f"/api/sessions/{sid}/files/notes.txt").status_code == 404
    assert send(http, sid, "still here?")[-1][1] == "done"  # and it goes on
    r = http.get(f"/api/sessions/{sid}/files/in/kept.txt")
    assert r.content == b"kept\n" and r.headers["x-ash-source"] == "sandbox"
