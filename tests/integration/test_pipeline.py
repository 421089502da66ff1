"""The Ray-native API: sessions from a Ray driver, errors across Ray, Ray Data pipelines.

Everything runs for real: the shared Ray cluster, the Serve app (to look at the same
sessions over HTTP), the registry, session workers and the fake model.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
import ray.data

from ash_ray.errors import (
    AgentNotFound,
    AshError,
    InvalidInput,
    SessionEnded,
    SessionNotFound,
    Unavailable,
)
from ash_ray.names import REGISTRY_NAME
from ash_ray.pipeline import AgentSession, AshRay, PipelineSessions, ask, connect, run_prompts
from tests.helpers import settled, wait_for
from tests.integration.sse import frames, new_session, send

pytestmark = pytest.mark.ray

MISSING = "00000000-0000-4000-8000-000000000000"


def deploy(http: httpx.Client, name: str, path: Path) -> str:
    r = http.post("/api/agents", json={"name": name, "path": str(path)})
    assert r.status_code == 201, r.text
    return name


@pytest.fixture()
def ash(server: str) -> AshRay:
    return connect()


def live_of(ash: AshRay, agent: str) -> list[dict[str, Any]]:
    """Live workers bound to sessions of ``agent`` (what `ash-ray ps` would list)."""
    return [w for w in ash.live() if w.get("agent") == agent]


# ---------------------------------------------------------------- sessions from a driver


def test_map_workers_do_not_import_the_agent_loop() -> None:
    # Every Ray Data map worker imports ash_ray.pipeline: it must stay light (no anthropic).
    code = "import sys, ash_ray.pipeline; print(sorted(m for m in sys.modules if 'anthropic' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_connect_names_the_missing_registry(server: str) -> None:
    with pytest.raises(Unavailable, match=r"no ash-ray registry .* namespace 'elsewhere'"):
        connect(namespace="elsewhere")


def test_ask_returns_text_usage_and_turns(ash: AshRay, agent: str) -> None:
    with ash.session(agent) as session:
        print(f"session {session.id}")
        out = ray.get(session.ask.remote("hello from a driver"))
        assert out["sessionId"] == session.id
        assert out["result"] == "echo: hello from a driver"
        assert out["isError"] is False and out["error"] is None
        assert out["subtype"] == "success" and out["numTurns"] >= 1
        assert out["usage"]["output_tokens"] > 0 and out["usage"]["input_tokens"] > 0
        info = session.describe()
        assert info["agent"] == agent and info["numTurns"] == 1 and not info["turnRunning"]
    assert ash.get_session(session.id)["status"] == "ended"
    assert not any(w["sessionId"] == session.id for w in ash.live())


SCHEMA = {
    "type": "json_schema",
    "schema": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
}


def test_structured_output_when_an_output_format_is_asked(
    ash: AshRay, agent: str, fake_model
) -> None:  # type: ignore[no-untyped-def]
    fake_model.script('{"n": 7}')
    with ash.session(agent) as session:
        out = ray.get(session.ask.remote("give me n", outputFormat=SCHEMA))
    assert out["structuredOutput"] == {"n": 7} and out["result"] == '{"n": 7}'
    sent = fake_model.message_requests[0]
    assert "JSON schema" in str(sent.get("system")), "the schema reaches the model"


def test_module_level_ask_ends_its_session(agent: str, server: str) -> None:
    out = ask(agent, "one shot")
    assert out["result"] == "echo: one shot"
    assert connect().get_session(out["sessionId"])["status"] == "ended"


def test_stream_yields_the_events_of_the_sse_stream(
    ash: AshRay, agent: str, http: httpx.Client
) -> None:
    with ash.session(agent) as session:
        refs = session.ask_stream.remote("stream me", include_partial_messages=True)
        events = [ray.get(ref) for ref in refs]
        types = [e[1] for e in events]
        assert types[0] == "session_start" and types[-1] == "done"
        assert "text_delta" in types and "turn_complete" in types
        text = "".join(e[2]["delta"] for e in events if e[1] == "text_delta")
        assert text == "echo: stream me"
        # The same turn replayed over HTTP SSE: the same numbered events.
        replay = http.get(f"/api/sessions/{session.id}/stream", params={"after": 0})
        over_http = list(frames(iter(replay.text.splitlines())))
        assert over_http[0][1] == "lifecycle" and over_http[0][2]["action"] == "created"
        assert [(f[0], f[1], f[2]) for f in over_http[1:]] == [tuple(e) for e in events]
        # The blocking convenience iterator gives the same shape.
        again = list(session.stream("second turn"))
        assert again[0][1] == "session_start" and again[-1][1] == "done"
        assert again[0][0] > events[-1][0]


@ray.remote(num_cpus=0.01)
def ask_in_a_task(session: AgentSession, agent: str) -> tuple[str, str]:
    """A Ray task: use a session handed over, and connect on its own."""
    return session.run("from a task")["result"], ask(agent, "task one-shot")["result"]


def test_sessions_travel_into_ray_tasks(ash: AshRay, agent: str) -> None:
    with ash.session(agent) as session:
        handed, own = ray.get(ask_in_a_task.remote(session, agent), timeout=120)
    assert handed == "echo: from a task" and own == "echo: task one-shot"


def test_run_resumes_a_session_whose_worker_went_away(ash: AshRay, agent: str) -> None:
    with ash.session(agent) as session:
        assert session.run("first")["result"] == "echo: first"
        ash.registry.stop(session.id).ref()  # the worker is released, the session is cold
        wait_for(lambda: ash.get_session(session.id)["status"] == "stopped", timeout_s=30)
        assert session.run("second")["result"] == "echo: second"
        assert ash.get_session(session.id)["status"] == "active"


def test_sessions_are_shared_with_http(ash: AshRay, agent: str, http: httpx.Client) -> None:
    # Made by a pipeline, inspected and used over HTTP ...
    session = ash.session(agent, system_prompt="be brief", model="claude-test-model")
    try:
        r = http.get(f"/api/sessions/{session.id}")
        assert r.status_code == 200, r.text
        assert r.json()["session"]["agentName"] == agent
        assert r.json()["session"]["model"] == "claude-test-model"
        assert session.id in {s["id"] for s in ash.list_sessions(agent=agent, status="active")}
        assert ray.get(session.ask.remote("via ray"))["result"] == "echo: via ray"
        frames_ = send(http, session.id, "via http")
        result = next(f[2] for f in frames_ if f[1] == "message" and f[2]["type"] == "result")
        assert result["result"] == "echo: via http"
        contents = [
            m["content"]
            for m in http.get(f"/api/sessions/{session.id}/messages").json()["messages"]
        ]
        assert "via ray" in str(contents) and "via http" in str(contents)
    finally:
        session.end()
    assert http.get(f"/api/sessions/{session.id}").json()["session"]["status"] == "ended"

    # ... and the other way round: made over HTTP, called from Ray, ended over HTTP.
    sid = new_session(http, agent)
    attached = ash.attach(sid)
    assert attached.run("attached")["result"] == "echo: attached"
    assert http.delete(f"/api/sessions/{sid}").status_code == 200
    assert attached.end()["status"] == "ended"  # ending twice is harmless


def test_our_errors_survive_the_trip_through_ray(ash: AshRay, agent: str) -> None:
    # Through the API: the plain exception, with its fields.
    with pytest.raises(SessionNotFound) as info:
        ash.attach(MISSING)
    assert info.value.session_id == MISSING  # type: ignore[attr-defined]
    assert type(info.value) is SessionNotFound
    with pytest.raises(AgentNotFound, match="not deployed"):
        ash.session("no-such-agent")

    # Straight ray.get on a registry call: Ray's wrapper *is* our class, too.
    registry = ray.get_actor(REGISTRY_NAME, namespace="ash")
    with pytest.raises(SessionNotFound) as raw:
        ray.get(registry.get_session.remote(MISSING))
    assert isinstance(raw.value, ray.exceptions.RayTaskError)
    assert raw.value.session_id == MISSING  # type: ignore[attr-defined]

    session = ash.session(agent)
    session.end()
    with pytest.raises(SessionEnded):
        ash.attach(session.id)
    with pytest.raises(InvalidInput, match="unknown session setting"):
        ash.session(agent, sytem_prompt="typo")
    with pytest.raises(InvalidInput, match="unknown turn option"):
        session.ask.remote("hi", max_turn=3)
    with pytest.raises(InvalidInput, match="session id must be a UUID"):
        ash.attach("not-a-uuid")


# ---------------------------------------------------------------- Ray Data


def test_run_prompts_answers_every_row_and_leaves_nothing_alive(
    ash: AshRay, http: httpx.Client, agent_dir: Path, fake_model
) -> None:  # type: ignore[no-untyped-def]
    name = deploy(http, "pipe-worker", agent_dir)
    rows = [{"id": i, "prompt": f"question {i}"} for i in range(24)]
    ds = ray.data.from_items(rows, override_num_blocks=6)
    out = run_prompts(ds, name, concurrency=2, batch_size=4).take_all()
    print(f"sessions used: {sorted({r['session_id'] for r in out})}")

    assert sorted(r["id"] for r in out) == list(range(24))
    for row in out:
        assert row["answer"] == f"echo: question {row['id']}", row
        assert row["error"] is None and row["num_turns"] >= 1 and row["output_tokens"] > 0
    used = {r["session_id"] for r in out}
    assert 1 <= len(used) <= 2  # one session per map worker, concurrency 2
    assert len(fake_model.message_requests) >= 24
    for sid in used:
        assert ash.get_session(sid)["status"] == "ended"
    assert live_of(ash, name) == []
    listed = http.get("/api/sessions", params={"agent": name}).json()["sessions"]
    # A map worker may open its session and get no rows: it is ended all the same.
    assert used <= {s["id"] for s in listed} and len(listed) <= 2
    assert {s["status"] for s in listed} == {"ended"}


def test_session_per_row(ash: AshRay, http: httpx.Client, agent_dir: Path) -> None:
    name = deploy(http, "pipe-row", agent_dir)
    ds = ray.data.from_items([{"q": f"row {i}"} for i in range(6)])
    out = run_prompts(
        ds, name, prompt_column="q", output_column="a", concurrency=2, session_per="row"
    ).take_all()
    assert sorted(r["a"] for r in out) == sorted(f"echo: row {i}" for i in range(6))
    assert len({r["session_id"] for r in out}) == 6
    assert {ash.get_session(r["session_id"])["status"] for r in out} == {"ended"}
    assert live_of(ash, name) == []


def test_sessions_are_ended_when_the_pipeline_fails(
    ash: AshRay, http: httpx.Client, agent_dir: Path
) -> None:
    name = deploy(http, "pipe-fail", agent_dir)
    rows: list[dict[str, Any]] = [{"prompt": f"fine {i}"} for i in range(7)]
    rows.append({"prompt": None})  # not a prompt: the map worker raises InvalidInput
    ds = ray.data.from_items(rows, override_num_blocks=4)
    with pytest.raises(Exception, match="every prompt must be a string"):
        run_prompts(ds, name, concurrency=2, batch_size=2)
    made = ash.list_sessions(agent=name)
    print(f"sessions of the failed pipeline: {made}")
    assert made, "the pipeline should have opened sessions before failing"
    assert {s["status"] for s in made} == {"ended"}
    assert live_of(ash, name) == []


def test_lazy_pipeline_with_context_manager_and_recorded_errors(
    ash: AshRay, http: httpx.Client, agent_dir: Path, fake_model
) -> None:  # type: ignore[no-untyped-def]
    from ash_ray.testing.fake_anthropic import ErrorReply

    name = deploy(http, "pipe-lazy", agent_dir)
    # Every model call fails: each row records its error instead of failing the pipeline.
    fake_model.script(*[ErrorReply(status=400, type="invalid_request_error")] * 3)
    with PipelineSessions(name, concurrency=1) as stage:
        ds = stage.map(ray.data.from_items([{"prompt": f"p{i}"} for i in range(3)]))
        out = ds.take_all()
    assert stage.summary is not None and stage.summary["created"] == 1
    assert [r["answer"] for r in out] == [None, None, None]
    assert all(r["error"] for r in out), out
    assert live_of(ash, name) == []
    with pytest.raises(InvalidInput, match="context manager"):
        stage.map(ds)
    with PipelineSessions(name) as unused, pytest.raises(AshError, match="unknown turn option"):
        unused.map(ds, temperature=0.2)
    assert unused.summary == {"created": 0, "ended": 0, "failed": []}


def prompts_asked(fake_model, marker: str) -> list[int]:  # type: ignore[no-untyped-def]
    """The rows ``"<marker> <n>"`` whose prompt reached the model, once per request."""
    found = re.compile(rf"{marker} (\d+)")
    newest = (json.dumps(body["messages"][-1]) for body in fake_model.message_requests)
    return [int(m.group(1)) for text in newest for m in found.finditer(text)]


def test_a_slow_consumer_holds_the_pipeline_a_bounded_number_of_rows_ahead(
    ash: AshRay, http: httpx.Client, agent_dir: Path, fake_model
) -> None:  # type: ignore[no-untyped-def]
    name = deploy(http, "pipe-ahead", agent_dir)
    rows = [{"id": i, "prompt": f"ahead {i}"} for i in range(40)]
    ds = ray.data.from_items(rows, override_num_blocks=20)
    asked = lambda: len(set(prompts_asked(fake_model, "ahead")))  # noqa: E731
    with PipelineSessions(name, concurrency=2) as stage:
        batches = iter(stage.map(ds, batch_size=2).iter_batches(batch_size=2))
        got = [next(batches)]
        # The consumer reads nothing more: the turns stop at the bound and wait for it.
        (paused,) = wait_for(settled(asked, quiet_s=8), timeout_s=180, what="turns to stop")
        print(f"rows asked while the consumer paused after one batch: {paused} of 40")
        # The batch read, what iter_batches buffers on its side (3 batches with its default
        # prefetch_batches=1), and max_rows_ahead: by default 2 workers x 2 batches x 2 rows.
        assert 2 + 8 <= paused <= 2 + 3 * 2 + 8, f"{paused} rows asked for 2 read"
        got += list(batches)  # ... and they resume when it reads on
    out = [row for batch in got for row in zip(batch["id"], batch["answer"], strict=True)]
    assert sorted(i for i, _ in out) == list(range(40))
    assert all(answer == f"echo: ahead {i}" for i, answer in out), out
    assert sorted(prompts_asked(fake_model, "ahead")) == list(range(40)), "each asked once"
    assert stage.summary is not None and stage.summary["failed"] == []
    assert stage.summary["created"] == stage.summary["ended"] <= 2
    assert {s["status"] for s in ash.list_sessions(agent=name)} == {"ended"}
    assert live_of(ash, name) == []


def test_run_prompts_with_structured_output(
    http: httpx.Client, agent_dir: Path, fake_model
) -> None:  # type: ignore[no-untyped-def]
    name = deploy(http, "pipe-json", agent_dir)
    fake_model.script(*[f'{{"n": {i}}}' for i in range(3)])
    ds = ray.data.from_items([{"prompt": f"n please {i}"} for i in range(3)])
    out = run_prompts(ds, name, concurrency=1, output_format=SCHEMA).take_all()
    assert sorted(r["structured_output"]["n"] for r in out) == [0, 1, 2]


def test_run_prompts_row_whose_worker_is_killed_is_answered_once(
    ash: AshRay, http: httpx.Client, agent_dir: Path, fake_model
) -> None:  # type: ignore[no-untyped-def]
    name = deploy(http, "pipe-lost", agent_dir)
    rows = [{"prompt": f"row {i}"} for i in range(3)] + [{"prompt": "doomed row"}]
    ds = ray.data.from_items(rows, override_num_blocks=1)
    result: dict[str, list[dict[str, Any]]] = {}

    def run() -> None:
        result["out"] = run_prompts(ds, name, concurrency=1, session_per="row").take_all()

    # The doomed row's reply parks before message_stop; its worker is killed there.
    with fake_model.hold("doomed row", at="message_stop") as hold:
        thread = threading.Thread(target=run)
        thread.start()
        hold.wait_held(120)
        doomed = [w for w in live_of(ash, name) if w.get("bound")]
        assert len(doomed) == 1, doomed  # one session per row, one row at a time
        os.kill(int(doomed[0]["pid"]), signal.SIGKILL)
        hold.release()
        thread.join(300)
    assert not thread.is_alive(), "run_prompts did not finish after the worker was lost"
    out = result["out"]
    assert sorted(r["prompt"] for r in out) == sorted(r["prompt"] for r in rows)
    for row in out:
        assert row["error"] is None, row
        assert row["answer"].startswith(f"echo: {row['prompt']}"), row
    assert live_of(ash, name) == []
