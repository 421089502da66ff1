"""A second Ray node that dies: its sessions come back paused and resume on the head.

The agent is deployed from a folder that is deleted before any session starts: the
workers on the extra node get the agent from the Store (agents are data, issue 11).

A registry of its own (namespace ash-nodeloss, its own store) places sessions on nodes
that declare ``ash_nodeloss_slot``, which only the extra node does; once that node is
lost (kill -9 of its raylet), the slot is gone from the cluster and the sessions resume
on the head with their conversation and the files of their last snapshot. A session
whose turn was in flight (its tool held open by a file latch) does not wait for a resume:
the turn continues on a new worker on the head, in the stream its driver follows.

With ``ASH_TURN_RECOVERY=interrupt`` (a registry of its own again) a lost worker's turn
ends with an error instead, and the session waits, ``paused``, for a resume.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import ray

from ash_ray import app
from ash_ray.config import Settings, load_settings
from ash_ray.handles import Event, RegistryClient
from ash_ray.lifecycle_events import UNSAVED_SEQ_MARGIN
from ash_ray.models import EventRecord
from ash_ray.pipeline import AshRay
from ash_ray.registry.recovery import WORKER_LOST
from ash_ray.session.recovery import LOST_TOOL
from tests.helpers import wait_for
from tests.integration.conftest import MODEL_KEY
from tests.integration.ray_node import ExtraNode
from tests.integration.test_turn_recovery import HOLD

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SLOT = "ash_nodeloss_slot"


@contextlib.contextmanager
def _own_ash(
    namespace: str, settings: Settings, agent_dir: Path,
    tmp_path_factory: pytest.TempPathFactory, **own: Any,
) -> Iterator[AshRay]:
    """A registry of its own (namespace, store), with the agent ``helper`` deployed from a
    folder deleted at once (workers get it from the store); killed at the end."""
    registry = app.ensure_registry(load_settings(
        namespace=namespace, data_dir=tmp_path_factory.mktemp(f"{namespace}-data"),
        anthropic_api_key=MODEL_KEY, anthropic_base_url=settings.anthropic_base_url,
        warm_pool_size=0, max_sandboxes=4, session_num_cpus=0.01, sweep_interval_s=3600,
        **own,
    ))  # fmt: skip
    try:
        folder = tmp_path_factory.mktemp(f"{namespace}-agent") / "helper"
        shutil.copytree(agent_dir, folder)
        registry.deploy_agent("helper", str(folder)).get()
        shutil.rmtree(folder)  # no node can read the original folder any more
        yield AshRay(registry)
    finally:
        ray.kill(registry.handle)


def test_a_lost_nodes_turn_continues_on_the_head_and_its_idle_session_resumes_there(
    ray_cluster: None, settings: Settings, agent_dir: Path, fake_model: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with (
        ExtraNode(tmp_path_factory.mktemp("node-loss"), {SLOT: 3}) as node,
        _own_ash("ash-nodeloss", settings, agent_dir, tmp_path_factory,
                 session_slot_resource=SLOT) as ash,
    ):  # fmt: skip
        registry = ash.registry
        sessions = []
        try:
            sessions = [ash.session("helper") for _ in range(3)]
            for i, s in enumerate(sessions):
                seeded = s.worker.exec("cat notes.txt", 30).get(60)
                assert seeded["stdout"].strip() == "seed file"  # the agent's file, from the Store
                cmd = json.dumps({"command": f"echo kept-{i} > kept.txt"})
                assert s.run(f"remember the number {i}\nTOOL Bash {cmd}")["error"] is None
                assert s.describe()["nodeId"] == node.node_id
            assert registry.health().get()["sessionsPerNode"] == {node.node_id: 3}
            assert {row["nodeId"] for row in ash.live()} == {node.node_id}  # ash-ray ps
            idle, streaming, running = sessions
            with ThreadPoolExecutor(2) as pool:
                # Two turns run a tool held open by a latch nobody opens: one streamed,
                # one asked for its outcome (run), each from its own thread.
                streamed = pool.submit(lambda: list(streaming.stream(HOLD)))
                ran = pool.submit(running.run, HOLD)
                for s in (streaming, running):
                    _wait_tool_running(registry, s.id)
                calls = len(fake_model.message_requests)
                node.kill_raylet()
                got, outcome = streamed.result(180), ran.result(180)
            _check_continued(got)
            assert outcome["error"] is None, outcome
            assert outcome["result"] == f"tool said: {LOST_TOOL}", outcome
            asked = fake_model.message_requests[calls:]  # the model is called again, once each
            assert [LOST_TOOL in json.dumps(r["messages"][-1]) for r in asked] == [True, True]
            for s in (streaming, running):
                assert ash.get_session(s.id)["status"] == "active"  # not paused
                assert s.describe()["nodeId"] not in ("", node.node_id)
                assert _turn_messages(registry, s.id) == [
                    "user", "assistant", "user", "assistant", "result"
                ]  # prompt, tool call, the lost tool's error result, the new answer, result
            wait_for(lambda: ash.get_session(idle.id)["status"] == "paused",
                     timeout_s=60, what="the lost node's idle session to be paused")
            for i, s in enumerate(sessions):
                s.refresh()  # resumes the idle one, on the head now
                assert s.describe()["nodeId"] not in ("", node.node_id)
                kept = s.worker.exec("cat kept.txt", 30).get(60)
                assert kept["stdout"].strip() == f"kept-{i}"  # the files of its last snapshot
                assert s.run("which number?")["error"] is None
                assert f"remember the number {i}" in json.dumps(fake_model.message_requests[-1])
            per_node = registry.health().get()["sessionsPerNode"]
            assert node.node_id not in per_node and sum(per_node.values()) == 3
        finally:
            for s in sessions:
                s.end()


def test_with_turn_recovery_interrupt_a_lost_workers_turn_ends_with_an_error(
    ray_cluster: None, settings: Settings, agent_dir: Path, fake_model: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with _own_ash("ash-interrupt", settings, agent_dir, tmp_path_factory,
                  turn_recovery="interrupt") as ash, ash.session("helper") as s:  # fmt: skip
        assert s.run("remember the number 7")["error"] is None
        pid = int(s.describe()["pid"])
        with ThreadPoolExecutor(1) as pool:
            streamed = pool.submit(lambda: list(s.stream(HOLD)))
            _wait_tool_running(ash.registry, s.id)
            calls = len(fake_model.message_requests)
            os.kill(pid, signal.SIGKILL)
            got = streamed.result(120)
        # The driver's stream ends with the turn: its error, then done.
        assert [(t, d.get("error")) for _seq, t, d in got[-2:]] == [
            ("error", WORKER_LOST), ("done", None)
        ], got[-3:]
        assert "tool_result" not in [t for _seq, t, _d in got]  # no lost tool's result
        wait_for(lambda: ash.get_session(s.id)["status"] == "paused",
                 timeout_s=60, what="the session to be paused")  # fmt: skip
        stored = [(e.type, e.data.get("error")) for e in _turn_events(ash.registry, s.id)]
        assert [e for e in stored if e[0] != "lifecycle"][-2:] == [
            ("error", WORKER_LOST), ("done", None)
        ], stored  # the timeline ends the turn
        assert _turn_messages(ash.registry, s.id) == ["user", "assistant"]  # no result
        assert len(fake_model.message_requests) == calls  # the model was not called again
        s.refresh()  # resumes it on a new worker
        assert int(s.describe()["pid"]) != pid
        assert s.run("which number?")["result"] == "echo: which number?"
        assert len(fake_model.message_requests) == calls + 1
        assert "remember the number 7" in json.dumps(fake_model.message_requests[-1])
        assert ash.registry.list_turns(s.id).get(60) == []  # the lost turn is not kept


def _wait_tool_running(registry: RegistryClient, sid: str) -> None:
    """Until the held tool's call is stored (the step a new worker keeps) and its message
    is kept as running (what a new worker continues)."""

    def stored() -> bool:
        messages = registry.list_messages(sid, 0, 1000).get(60)
        last = messages[-1].content if messages else ""
        calls = [b for b in last if b.get("type") == "tool_use"] if isinstance(last, list) else []
        turns = registry.list_turns(sid).get(60)
        return bool(calls) and [t.state for t in turns] == ["running"]

    wait_for(stored, timeout_s=60, what="the held tool call stored and its turn running")


def _check_continued(got: list[Event]) -> None:
    """One stream, one numbering: the lost tool's error result, the model's new answer."""
    types = [t for _seq, t, _data in got]
    assert types[0] == "session_start" and types[-1] == "done", types
    assert "error" not in types and types.count("done") == 1, got[-4:]
    seqs = [seq for seq, _t, _d in got]
    # None lost, none twice: consecutive, except the numbers the new worker leaves unused
    # (the lost one may have shown events it had not saved) where the turn continues.
    steps = [b - a for a, b in itertools.pairwise(seqs)]
    assert sorted(set(steps)) == [1, UNSAVED_SEQ_MARGIN + 1] and steps.count(
        UNSAVED_SEQ_MARGIN + 1) == 1, seqs
    lost = [data for _seq, t, data in got if t == "tool_result"]
    assert len(lost) == 1 and lost[0]["is_error"] and lost[0]["content"] == LOST_TOOL, lost
    result = [d for _s, t, d in got if t == "message" and d.get("type") == "result"]
    assert [r["result"] for r in result] == [f"tool said: {LOST_TOOL}"], result


def _turn_events(registry: RegistryClient, sid: str) -> list[EventRecord]:
    """The stored events of the session's last turn."""
    events = registry.list_events(sid, 0, None).get(60)
    start = max(e.seq for e in events if e.type == "session_start")
    return [e for e in events if e.seq >= start]


def _turn_messages(registry: RegistryClient, sid: str) -> list[str]:
    """The Agent SDK message types of the session's last turn, as stored."""
    return [e.data["type"] for e in _turn_events(registry, sid) if e.type == "message"]
