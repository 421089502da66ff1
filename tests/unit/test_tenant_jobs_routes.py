"""Queue, usage, analytics, evals and attachments by id, as two tenants call them over ASGI.

No Ray: the jobs actor's own methods run in process on a real SQLite Store, the registry
is the fake of :mod:`tests.unit.test_api_routes` taught two tenants' keys, agents,
sessions and an attachment. Tenant ``globex`` must get 404 (the shape of any 404) for
every id of ``acme``'s, and its lists and sums must leave ``acme``'s rows out.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ash_ray.api.app import create_api
from ash_ray.crypto import KeyHasher
from ash_ray.errors import AgentNotFound, NotFound
from ash_ray.jobs.actor import Jobs
from ash_ray.jobs.queue_worker import QueueWorker
from ash_ray.models import SessionRecord, Usage, UsageRecord, WriteBatch, utcnow
from ash_ray.records import AttachmentRecord
from ash_ray.store import SqliteStore
from ash_ray.store._sql import Db
from ash_ray.store.evals import EvalStore
from ash_ray.store.queue import QueueStore
from ash_ray.store.usage import UsageQueries
from ash_ray.tenants import ApiKeyRecord
from tests.unit.test_api_routes import KEY, NOW, FakeContext, FakeRegistry

KEYS = {"acme": "ash_acme-unit-key", "globex": "ash_globex-unit-key"}


class TenantRegistry(FakeRegistry):
    """The fake registry with stored keys, per-tenant agents and attachments."""

    def __init__(self) -> None:
        super().__init__()
        hasher = KeyHasher(None)  # the unit settings have no ASH_CREDENTIAL_KEY
        self.keys = {
            hasher.hash(key): ApiKeyRecord(id=tenant, tenant_id=tenant, key_hash="h",
                                           key_prefix="ash_", created_at=NOW)
            for tenant, key in KEYS.items()
        }  # fmt: skip
        self.agents = {("acme", "bot"), ("globex", "bot"), ("default", "bot")}
        self.attachments: dict[str, AttachmentRecord] = {}
        self.bytes_read: list[str] = []  # attachments whose bytes were loaded

    def do_find_api_key(self, digest: str) -> ApiKeyRecord | None:
        return self.keys.get(digest)

    def do_get_agent(self, name: str, tenant: str) -> dict[str, Any]:
        if (tenant, name) not in self.agents:
            raise AgentNotFound(f"agent {name!r} is not deployed")
        return {"name": name}

    async def agent_op(self, op: str, *args: Any, tenant: str) -> Any:
        self.calls.append((op, (*args, tenant)))
        assert op == "versions.list"
        return []

    def do_get_attachment(self, attachment_id: str) -> AttachmentRecord:
        if attachment_id not in self.attachments:
            raise NotFound(f"attachment {attachment_id} does not exist")
        return self.attachments[attachment_id]

    def do_read_attachment(self, attachment_id: str) -> tuple[AttachmentRecord, bytes]:
        self.bytes_read.append(attachment_id)
        return self.do_get_attachment(attachment_id), b"secret bytes"

    def do_delete_attachment(self, attachment_id: str) -> AttachmentRecord:
        return self.attachments.pop(attachment_id)


class LocalJobs:
    """The jobs actor's methods in process (no Ray), on the test's Store; no services run."""

    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs

    def __getattr__(self, name: str) -> Any:
        return getattr(self.jobs, name)

    async def evals(self, method: str, *args: Any, tenant: str) -> Any:
        return await self.jobs.evals_call(method, *args, tenant=tenant)


async def _local_jobs(ctx: FakeContext, store: SqliteStore) -> LocalJobs:
    jobs = Jobs(ctx.settings, "unit-owner")
    db = Db(store)
    jobs.store, jobs.queue, jobs.usage, jobs.evals = store, QueueStore(db), UsageQueries(db), (
        EvalStore(db)
    )
    jobs.worker = QueueWorker(ctx.settings, jobs.queue, None, "unit-owner")  # type: ignore[arg-type]
    jobs.eval_runner = asyncio.Event()  # type: ignore[assignment]  # only .wake() is called
    jobs.eval_runner.wake = lambda: None  # type: ignore[attr-defined]
    jobs._init = asyncio.create_task(asyncio.sleep(0))  # ready: _start never runs
    return LocalJobs(jobs)


class World:
    def __init__(self, ctx: FakeContext, store: SqliteStore, clients: dict[str, httpx.AsyncClient]):
        self.ctx, self.store, self.c = ctx, store, clients
        self.registry: TenantRegistry = ctx.registry  # type: ignore[assignment]

    def session(self, tenant: str) -> SessionRecord:
        return self.registry.do_create_session({"agent": "bot"}, tenant)


@pytest.fixture()
async def world(tmp_path: Path) -> AsyncIterator[World]:
    ctx = FakeContext(tmp_path)
    ctx.registry = TenantRegistry()
    store = SqliteStore(tmp_path / "jobs.db", tmp_path / "snap")
    await store.open()
    ctx.jobs = await _local_jobs(ctx, store)  # type: ignore[attr-defined]
    transport = httpx.ASGITransport(app=create_api(ctx))  # type: ignore[arg-type]
    clients = {
        tenant: httpx.AsyncClient(transport=transport, base_url="http://ash",
                                  headers={"Authorization": f"Bearer {key}"})
        for tenant, key in {**KEYS, "default": KEY}.items()
    }  # fmt: skip
    yield World(ctx, store, clients)
    for c in clients.values():
        await c.aclose()
    await store.close()


def _404(r: httpx.Response, what: str) -> None:
    assert r.status_code == 404, r.text
    body = r.json()
    assert body["statusCode"] == 404 and what in body["error"], body


async def test_queue_items_are_the_callers_tenants(world: World) -> None:
    acme, globex, admin = world.c["acme"], world.c["globex"], world.c["default"]
    r = await acme.post("/api/queue", json={"agentName": "bot", "prompt": "hi"})
    assert r.status_code == 201, r.text
    item = r.json()["item"]
    assert item["tenantId"] == "acme"
    iid = item["id"]
    unknown = await globex.get(f"/api/queue/{uuid.uuid4()}")
    _404(unknown, "not found")
    for r in (await globex.get(f"/api/queue/{iid}"), await globex.delete(f"/api/queue/{iid}")):
        _404(r, f"queue item {iid} not found")
        assert r.json().keys() == unknown.json().keys()
    assert (await globex.get("/api/queue")).json()["items"] == []
    assert (await globex.get("/api/queue/stats")).json()["stats"]["pending"] == 0
    assert (await admin.get("/api/queue")).json()["items"] == []  # ASH_API_KEY: default's
    # Still pending: globex's DELETE cancelled nothing.
    assert (await acme.get(f"/api/queue/{iid}")).json()["item"]["status"] == "pending"
    assert (await acme.get("/api/queue/stats")).json()["stats"]["pending"] == 1
    assert (await acme.delete(f"/api/queue/{iid}")).json()["item"]["status"] == "cancelled"


async def test_a_queue_item_may_not_name_another_tenants_session_or_agent(
    world: World,
) -> None:
    theirs = world.session("acme").id
    globex = world.c["globex"]
    r = await globex.post("/api/queue", json={"agentName": "bot", "prompt": "x",
                                              "sessionId": theirs})
    _404(r, f"session {theirs} not found")
    world.registry.agents.add(("acme", "only-acme"))
    r = await globex.post("/api/queue", json={"agentName": "only-acme", "prompt": "x"})
    _404(r, "not deployed")
    assert (await world.c["acme"].get("/api/queue")).json()["items"] == []
    mine = world.session("globex").id
    r = await globex.post("/api/queue", json={"agentName": "bot", "prompt": "x",
                                              "sessionId": mine})
    assert r.status_code == 201 and r.json()["item"]["sessionId"] == mine


async def test_an_attachment_by_id_is_its_sessions_tenants(world: World) -> None:
    sid = world.session("acme").id
    aid = str(uuid.uuid4())
    world.registry.attachments[aid] = AttachmentRecord(
        id=aid, session_id=sid, filename="a.txt", mime_type="text/plain", size=12,
        sha256="0" * 64, created_at=NOW,
    )  # fmt: skip
    globex, acme = world.c["globex"], world.c["acme"]
    unknown = await globex.get(f"/api/attachments/{uuid.uuid4()}")
    for r in (await globex.get(f"/api/attachments/{aid}"),
              await globex.delete(f"/api/attachments/{aid}"),
              await world.c["default"].get(f"/api/attachments/{aid}")):
        _404(r, f"attachment {aid} does not exist")
        assert "session" not in r.json()["error"]  # says no more than for an unknown id
        assert r.json().keys() == unknown.json().keys()
    assert aid in world.registry.attachments  # not deleted by globex
    assert world.registry.bytes_read == []  # nor its bytes loaded for another tenant
    r = await acme.get(f"/api/attachments/{aid}")
    assert r.status_code == 200 and r.content == b"secret bytes"
    assert (await acme.delete(f"/api/attachments/{aid}")).status_code == 204
    assert aid not in world.registry.attachments


def _usage(sid: str, n: int) -> UsageRecord:
    return UsageRecord(session_id=sid, agent_name="bot", turn=1, model="m", created_at=utcnow(),
                       usage=Usage(input_tokens=n, output_tokens=n), messages=1)


async def test_usage_and_analytics_count_only_the_callers_turns(world: World) -> None:
    a, g = world.session("acme"), world.session("globex")
    await world.store.write(WriteBatch(sessions=[a, g], usage=[_usage(a.id, 7), _usage(g.id, 50)]))
    acme, globex = world.c["acme"], world.c["globex"]
    events = (await globex.get("/api/usage")).json()["events"]
    assert events and {e["sessionId"] for e in events} == {g.id}
    assert {e["tenantId"] for e in events} == {"globex"}
    assert (await globex.get("/api/usage", params={"sessionId": a.id})).json()["events"] == []
    stats = (await globex.get("/api/usage/stats")).json()["stats"]
    assert (stats["totalInputTokens"], stats["totalMessages"]) == (50, 1)
    stats = (await acme.get("/api/usage/stats", params={"agentName": "bot"})).json()["stats"]
    assert stats["totalInputTokens"] == 7
    seen = (await globex.get("/api/analytics")).json()
    assert seen["sessions"] == {"total": 1, "byStatus": {"active": 1}}
    assert seen["usage"]["totalInputTokens"] == 50
    admin = (await world.c["default"].get("/api/analytics")).json()
    assert admin["sessions"]["total"] == 0 and admin["usage"]["totalInputTokens"] == 0


async def test_eval_cases_and_runs_are_the_callers_tenants(world: World) -> None:
    acme, globex = world.c["acme"], world.c["globex"]
    r = await acme.post("/api/agents/bot/eval-cases", json={"question": "q?"})
    assert r.status_code == 201, r.text
    cid = r.json()["case"]["id"]
    run = (await acme.post("/api/agents/bot/eval-runs", json={})).json()["run"]
    assert run["totalCases"] == 1
    assert ("versions.list", ("bot", "acme")) in world.registry.calls
    rid = run["id"]
    base = "/api/agents/bot"
    for r in (
        await globex.get(f"{base}/eval-cases/{cid}"),
        await globex.patch(f"{base}/eval-cases/{cid}", json={"question": "mine"}),
        await globex.delete(f"{base}/eval-cases/{cid}"),
    ):
        _404(r, f"eval case {cid} not found")
    for r in (
        await globex.get(f"{base}/eval-runs/{rid}"),
        await globex.get(f"{base}/eval-runs/{rid}/results"),
        await globex.post(f"{base}/eval-runs/{rid}/score", json={"humanScore": 5}),
        await globex.get(f"{base}/eval-runs/compare", params={"runA": rid, "runB": rid}),
    ):
        _404(r, "eval run")
    assert (await globex.get(f"{base}/eval-cases")).json()["cases"] == []
    assert (await globex.get(f"{base}/eval-cases/export")).json()["cases"] == []
    assert (await globex.get(f"{base}/eval-runs")).json()["runs"] == []
    # globex's own run of its own agent "bot" finds none of acme's cases.
    assert (await globex.post(f"{base}/eval-runs", json={})).json()["run"]["totalCases"] == 0
    got = (await acme.get(f"{base}/eval-cases/{cid}")).json()["case"]
    assert got["question"] == "q?"
    world.registry.agents.discard(("globex", "bot"))
    r = await globex.post(f"{base}/eval-cases", json={"question": "q"})
    _404(r, "not deployed")  # acme's "bot" is not globex's
