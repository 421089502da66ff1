"""Usage accounting, analytics and the durable queue over HTTP, on SQLite and Postgres.

Ash's own generated client (``ash_sdk.api.queue`` / ``ash_sdk.api.usage``) reads the
answers where it covers the route.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import Any

import httpx
import pytest
import ray
from ash_sdk import AuthenticatedClient
from ash_sdk.api.queue import (
    delete_api_queue_id,
    get_api_queue,
    get_api_queue_id,
    get_api_queue_stats,
    post_api_queue,
)
from ash_sdk.api.usage import get_api_usage, get_api_usage_stats
from ash_sdk.models import PostApiQueueBody

from ash_ray.config import Settings
from ash_ray.handles import RegistryClient
from ash_ray.jobs.actor import JOBS_NAME
from ash_ray.store import SqliteStore
from ash_ray.store._sql import Db
from ash_ray.store.queue import QueueStore
from ash_ray.testing.fake_replies import ErrorReply
from tests.helpers import wait_for
from tests.integration.conftest import API_KEY, Target
from tests.integration.sse import Frame, message_kinds, new_session, send

pytestmark = pytest.mark.ray

COUNTERS = ("input_tokens", "output_tokens", "cache_creation_input_tokens",
            "cache_read_input_tokens")


def sdk(target: Target) -> AuthenticatedClient:
    return AuthenticatedClient(base_url=str(target.http.base_url).rstrip("/"), token=API_KEY,
                               timeout=60)  # type: ignore[arg-type]


def result_usage(frames: list[Frame]) -> dict[str, int]:
    for _, event, data in frames:
        msg = data.get("data", data) if event == "message" else {}
        if isinstance(msg, dict) and msg.get("type") == "result":
            return {k: int(msg["usage"].get(k) or 0) for k in COUNTERS}
    raise AssertionError(f"no result message in {frames}")


def finished(target: Target, item_id: str) -> dict[str, Any] | None:
    item = target.http.get(f"/api/queue/{item_id}").json()["item"]
    return item if item["status"] in ("completed", "failed", "cancelled") else None


def test_usage_stats_are_exact_sums_of_the_turns(target: Target) -> None:
    http = target.http
    sid = new_session(http, target.agent)
    turns = [send(http, sid, "first"), send(http, sid, 'TOOL Bash {"command": "true"}')]
    want = {k: sum(result_usage(t)[k] for t in turns) for k in COUNTERS}
    assert want["input_tokens"] > 0 and want["output_tokens"] > 0

    stats = get_api_usage_stats.sync(client=sdk(target), session_id=uuid.UUID(sid))
    assert stats is not None and not hasattr(stats, "error"), stats
    s = stats.stats  # type: ignore[union-attr]
    assert (s.total_input_tokens, s.total_output_tokens, s.total_cache_creation_tokens,
            s.total_cache_read_tokens) == tuple(want[k] for k in COUNTERS)
    assert s.total_tool_calls == 1 and s.total_messages == 2
    assert s.total_compute_seconds > 0

    events = get_api_usage.sync(client=sdk(target), session_id=uuid.UUID(sid), limit=1000)
    got = events.events  # type: ignore[union-attr]
    assert {str(e.session_id) for e in got} == {sid}
    assert sum(e.value for e in got if e.event_type == "input_tokens") == want["input_tokens"]
    assert sum(e.value for e in got if e.event_type == "message") == 2
    assert [e.created_at for e in got] == sorted((e.created_at for e in got), reverse=True)
    assert len(http.get("/api/usage", params={"sessionId": sid, "limit": 3}).json()["events"]) == 3

    by_agent = http.get("/api/usage/stats", params={"agentName": target.agent}).json()["stats"]
    assert by_agent["totalInputTokens"] >= want["input_tokens"]
    future = http.get("/api/usage/stats", params={"sessionId": sid,
                                                  "after": "2999-01-01T00:00:00Z"})
    assert future.json()["stats"]["totalMessages"] == 0

    analytics = http.get("/api/analytics").json()
    assert analytics["agents"]["total"] >= 1
    assert analytics["sessions"]["total"] == sum(analytics["sessions"]["byStatus"].values()) >= 1
    assert analytics["usage"]["totalInputTokens"] >= want["input_tokens"]
    assert analytics["evals"]["totalRuns"] >= 0

    for bad in ({"sessionId": "nope"}, {"limit": 0}, {"limit": 1001}, {"after": "yesterday"}):
        r = http.get("/api/usage", params=bad)
        assert r.status_code == 400, (bad, r.text)


def test_queue_item_runs_as_a_saved_turn(target: Target) -> None:
    client = sdk(target)
    made = post_api_queue.sync(client=client, body=PostApiQueueBody(
        agent_name=target.agent, prompt="queued hello"))
    item_id = str(made.item.id)  # type: ignore[union-attr]
    assert made.item.status == "pending" or made.item.status == "processing"  # type: ignore[union-attr]
    item = wait_for(lambda: finished(target, item_id), timeout_s=60, what="queue item done")
    assert item["status"] == "completed", item
    assert item["result"] == "echo: queued hello" and item["retryCount"] == 0
    sid = item["sessionId"]
    msgs = target.http.get(f"/api/sessions/{sid}/messages").json()["messages"]
    # persisted, unlike Ash (Agent SDK shapes: prompt, reply, result)
    assert [json.loads(m["content"])["type"] for m in msgs] == ["user", "assistant", "result"]
    assert "queued hello" in str(msgs[0]["content"])
    usage = target.http.get("/api/usage/stats", params={"sessionId": sid}).json()["stats"]
    assert usage["totalMessages"] == 1 and usage["totalInputTokens"] > 0

    got = get_api_queue_id.sync(client=client, id=uuid.UUID(item_id))
    assert got.item.status == "completed" and got.item.started_at and got.item.completed_at  # type: ignore[union-attr]
    listed = get_api_queue.sync(client=client, status="completed", limit=500)
    assert item_id in {str(i.id) for i in listed.items}  # type: ignore[union-attr]
    stats = get_api_queue_stats.sync(client=client)
    assert stats.stats.completed >= 1  # type: ignore[union-attr]

    # An item on a given session runs there.
    r = target.http.post("/api/queue", json={"agentName": target.agent, "prompt": "again",
                                              "sessionId": sid})
    again = wait_for(lambda: finished(target, r.json()["item"]["id"]), timeout_s=60,
                     what="second item")
    assert again["status"] == "completed" and again["sessionId"] == sid
    assert message_kinds(target.http, sid) == ["user", "assistant", "result"] * 2


def session_status(target: Target, session_id: str) -> str:
    return str(target.http.get(f"/api/sessions/{session_id}").json()["session"]["status"])


def test_queue_releases_the_sessions_it_opens_never_a_named_one(target: Target) -> None:
    http = target.http
    mine = new_session(http, target.agent)
    opened = http.post("/api/queue", json={"agentName": target.agent, "prompt": "opened"})
    named = http.post("/api/queue", json={"agentName": target.agent, "prompt": "named",
                                          "sessionId": mine})
    items = [wait_for(lambda r=r: finished(target, r.json()["item"]["id"]), timeout_s=60,
                      what="queue item") for r in (opened, named)]
    assert [i["status"] for i in items] == ["completed", "completed"], items
    queue_sid = items[0]["sessionId"]
    assert queue_sid != mine and items[1]["sessionId"] == mine
    # The queue's own session gave its worker and sandbox back as the item completed...
    assert session_status(target, queue_sid) == "stopped"
    assert message_kinds(http, queue_sid) == ["user", "assistant", "result"]
    # ...and still takes a follow-up (it resumes).
    assert send(http, queue_sid, "follow-up")
    assert session_status(target, queue_sid) == "active"
    # The user's session is left active and usable.
    assert session_status(target, mine) == "active"
    assert send(http, mine, "still mine")
    assert message_kinds(http, mine) == ["user", "assistant", "result"] * 2


def test_queue_priority_cancel_and_refusals(target: Target, fake_model) -> None:  # type: ignore[no-untyped-def]
    http = target.http
    holds = [fake_model.hold(f"blocker-{i}") for i in range(2)]
    try:
        blockers = [http.post("/api/queue", json={"agentName": target.agent,
                                                  "prompt": f"blocker-{i}"}).json()["item"]["id"]
                    for i in range(2)]
        for h in holds:  # both queue slots (ASH_QUEUE_CONCURRENCY=2) are now busy
            h.wait_seen(60)
        low = http.post("/api/queue", json={"agentName": target.agent, "prompt": "low"})
        high = http.post("/api/queue", json={"agentName": target.agent, "prompt": "high",
                                             "priority": 9})
        doomed = http.post("/api/queue", json={"agentName": target.agent, "prompt": "doomed"})
        doomed_id = doomed.json()["item"]["id"]
        cancelled = delete_api_queue_id.sync(client=sdk(target), id=uuid.UUID(doomed_id))
        assert cancelled.item.status == "cancelled"  # type: ignore[union-attr]
        assert http.delete(f"/api/queue/{doomed_id}").status_code == 400  # not pending
        assert http.delete(f"/api/queue/{blockers[0]}").status_code == 400  # running
    finally:
        for h in holds:
            h.release()
    ids = [low.json()["item"]["id"], high.json()["item"]["id"], *blockers]
    done = [wait_for(lambda i=i: finished(target, i), timeout_s=60, what="item") for i in ids]
    assert all(d["status"] == "completed" for d in done), done
    assert done[1]["startedAt"] <= done[0]["startedAt"]  # priority first, then age
    assert http.get(f"/api/queue/{doomed_id}").json()["item"]["status"] == "cancelled"

    assert http.get(f"/api/queue/{uuid.uuid4()}").status_code == 404
    assert http.delete(f"/api/queue/{uuid.uuid4()}").status_code == 404
    assert http.get("/api/queue/not-a-uuid").status_code == 400
    assert http.get("/api/queue", params={"status": "odd"}).status_code == 400
    assert http.get("/api/queue", params={"limit": 501}).status_code == 400
    for bad in ({"agentName": target.agent, "prompt": ""},
                {"agentName": target.agent, "prompt": "x", "priority": -1},
                {"agentName": target.agent, "prompt": "x", "sessionId": "nope"},
                {"prompt": "x"}):
        r = http.post("/api/queue", json=bad)
        assert r.status_code == 400, (bad, r.text)
    assert http.post("/api/queue", json={"agentName": "no-such-agent",
                                         "prompt": "x"}).status_code == 404
    assert http.post("/api/queue", json={"agentName": target.agent, "prompt": "x",
                                         "sessionId": str(uuid.uuid4())}).status_code == 404


def test_queue_retries_then_fails(target: Target, fake_model) -> None:  # type: ignore[no-untyped-def]
    fake_model.script(*[ErrorReply(status=400, type="invalid_request_error")] * 2)
    r = target.http.post("/api/queue", json={"agentName": target.agent, "prompt": "fails",
                                             "maxRetries": 1})
    item = wait_for(lambda: finished(target, r.json()["item"]["id"]), timeout_s=60,
                    what="failed item")
    assert item["status"] == "failed" and item["retryCount"] == 2, item
    assert item["error"]
    assert session_status(target, item["sessionId"]) == "stopped"  # failed for good
    assert fake_model.pending == 0  # two attempts, each one model call


def test_queue_item_finishes_once_when_the_worker_is_killed_mid_item(
    target: Target, fake_model  # type: ignore[no-untyped-def]
) -> None:
    http = target.http
    with fake_model.hold("survive the kill", at="message_stop") as hold:
        r = http.post("/api/queue", json={"agentName": target.agent,
                                          "prompt": "survive the kill"})
        item_id = r.json()["item"]["id"]
        hold.wait_held(60)
        running = http.get(f"/api/queue/{item_id}").json()["item"]
        assert running["status"] == "processing" and running["sessionId"]
        jobs = ray.get_actor(JOBS_NAME, namespace=target.namespace)
        before = ray.get(jobs.ping.remote())
        ray.kill(jobs, no_restart=False)  # Ray restarts it: same owner id, new process
        wait_for(lambda: _restarted(target, before["pid_token"]), timeout_s=60,
                 what="jobs actor back")
    item = wait_for(lambda: finished(target, item_id), timeout_s=60, what="item done")
    assert item["status"] == "completed" and item["sessionId"] == running["sessionId"]
    # Opened by the worker's past life, still the queue's to release.
    assert session_status(target, item["sessionId"]) == "stopped"
    msgs = http.get(f"/api/sessions/{item['sessionId']}/messages").json()["messages"]
    # the prompt ran once (Agent SDK shapes: prompt, reply, result)
    assert [json.loads(m["content"])["type"] for m in msgs] == ["user", "assistant", "result"]
    sent = [b for b in fake_model.message_requests if "survive the kill" in str(b["messages"])]
    assert len(sent) == 1
    usage = http.get("/api/usage/stats", params={"sessionId": item["sessionId"]}).json()
    assert usage["stats"]["totalMessages"] == 1


def _restarted(target: Target, old: str) -> bool:
    try:
        jobs = ray.get_actor(JOBS_NAME, namespace=target.namespace)
        return bool(ray.get(jobs.ping.remote(), timeout=10)["pid_token"] != old)
    except (ray.exceptions.RayError, ValueError):
        return False


def test_cli_queue_usage_and_eval(target: Target, capsys: pytest.CaptureFixture[str]) -> None:
    from ash_ray.cli import main

    url = ["--url", str(target.http.base_url).rstrip("/"), "--api-key", API_KEY]
    assert main([*url, "queue", "--json", "add", target.agent, "from the cli", "--wait"]) == 0
    item = json.loads(capsys.readouterr().out)
    assert item["status"] == "completed" and item["result"] == "echo: from the cli"
    assert main([*url, "usage", "--json", "--session", item["sessionId"]]) == 0
    assert json.loads(capsys.readouterr().out)["totalMessages"] == 1
    assert main([*url, "queue", "stats"]) == 0
    assert json.loads(capsys.readouterr().out)["completed"] >= 1
    target.http.post(f"/api/agents/{target.agent}/eval-cases",
                     json={"question": "cli eval", "expectedTopics": ["cli"], "tags": ["cli"]})
    assert main([*url, "eval", "--json", "run", target.agent, "--tag", "cli"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["run"]["status"] == "completed" and shown["run"]["passRate"] == 1.0
    assert main([*url, "eval", "show", target.agent, shown["run"]["id"]]) == 0
    assert "cli eval" in capsys.readouterr().out


def test_work_left_in_the_store_starts_the_jobs_actor(
    http: httpx.Client, agent: str, settings: Settings
) -> None:
    """No jobs process is kept without work (issue 14). Here the jobs actor is gone for
    good and an item waits in the Store, written there as another cluster on the same
    database would: the registry's sweep starts a jobs actor, which runs the item; the
    ingress's queue calls then reach the new actor."""
    with contextlib.suppress(ValueError):
        ray.kill(ray.get_actor(JOBS_NAME, namespace=settings.namespace), no_restart=True)
    wait_for(lambda: not _jobs_alive(settings.namespace), what="the jobs actor gone")

    async def enqueue() -> str:
        async with SqliteStore(settings.sqlite_path, settings.snapshot_dir) as store:
            item = await QueueStore(Db(store)).add(
                agent_name=agent, prompt="left in the store", session_id=None, priority=0,
                max_retries=0,
            )
        return str(item["id"])

    item_id = asyncio.run(enqueue())
    RegistryClient(settings.namespace).sweep().get(60)
    assert _jobs_alive(settings.namespace)

    def done() -> dict[str, Any] | None:
        item = http.get(f"/api/queue/{item_id}").json()["item"]
        return item if item["status"] == "completed" else None

    item = wait_for(done, timeout_s=60, what="the stored item run by the new jobs actor")
    assert item["result"] == "echo: left in the store"


def _jobs_alive(namespace: str) -> bool:
    try:
        return bool(ray.get(ray.get_actor(JOBS_NAME, namespace=namespace).ping.remote(),
                            timeout=30)["ok"])
    except (ray.exceptions.RayError, ValueError):
        return False
