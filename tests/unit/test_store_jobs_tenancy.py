"""Queue items, usage, analytics and evals of two tenants in one Store (SQLite, Postgres).

Each tenant sees only its own rows: another tenant's id reads as absent (the routes' 404),
and lists, stats and sums leave the other tenant's rows out.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from ash_ray.models import SessionRecord, Usage, UsageRecord, WriteBatch
from ash_ray.store._sql import Db
from ash_ray.store.evals import EvalStore
from ash_ray.store.queue import QueueStore
from ash_ray.store.usage import UsageFilter, UsageQueries

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


async def test_queue_items_are_their_tenants(db: Db) -> None:
    q = QueueStore(db)
    mine = await q.add(agent_name="bot", prompt="p", session_id=None, priority=0,
                       max_retries=0, tenant="acme")
    theirs = await q.add(agent_name="bot", prompt="p", session_id=None, priority=0,
                         max_retries=0, tenant="globex")
    assert mine["tenant_id"] == "acme"
    assert await q.get(mine["id"], "globex") is None
    assert await q.cancel(mine["id"], "globex") is None
    assert (await q.get(mine["id"], "acme"))["status"] == "pending"  # type: ignore[index]
    assert [i["id"] for i in await q.list(tenant="globex")] == [theirs["id"]]
    assert (await q.stats("globex"))["pending"] == 1
    assert await q.stats("initech") == dict.fromkeys(
        ("pending", "processing", "completed", "failed", "cancelled"), 0
    )
    # The worker serves every tenant, and learns each item's tenant from its claim.
    claimed = {(await q.claim("w", 60) or {}).get("tenant_id") for _ in range(2)}
    assert claimed == {"acme", "globex"}


def _usage(sid: str, agent: str, n: int) -> UsageRecord:
    return UsageRecord(
        session_id=sid, agent_name=agent, turn=1, model="m", created_at=T0,
        usage=Usage(input_tokens=n, output_tokens=2 * n), tool_calls=1, messages=1,
        compute_ms=1000,
    )


def _session(agent: str, tenant: str, status: str = "active") -> SessionRecord:
    sid = str(uuid.uuid4())
    return SessionRecord(
        id=sid, agent_name=agent, tenant_id=tenant, sandbox_id=sid, status=status,  # type: ignore[arg-type]
        created_at=T0, last_active_at=T0,
    )  # fmt: skip


async def test_usage_and_analytics_count_only_the_tenants_sessions(db: Db) -> None:
    # Both tenants have an agent named "bot"; their turns must not mix.
    await db.store.upsert_agent("bot", "/a", "acme")
    await db.store.upsert_agent("bot", "/g", "globex")
    await db.store.upsert_agent("other", "/g2", "globex")
    a1, a2 = _session("bot", "acme"), _session("bot", "acme", "paused")
    g1 = _session("bot", "globex")
    await db.store.write(WriteBatch(
        sessions=[a1, a2, g1],
        usage=[_usage(a1.id, "bot", 10), _usage(a2.id, "bot", 20), _usage(g1.id, "bot", 400)],
    ))  # fmt: skip
    u = UsageQueries(db)
    acme = await u.stats(UsageFilter(tenant="acme"))
    assert (acme["totalInputTokens"], acme["totalOutputTokens"]) == (30, 60)
    assert acme["totalMessages"] == 2 and acme["totalComputeSeconds"] == 2.0
    globex = await u.stats(UsageFilter(agent_name="bot", tenant="globex"))
    assert globex["totalInputTokens"] == 400 and globex["totalMessages"] == 1
    # Another tenant's session id filters to nothing, not to that session's usage.
    assert (await u.stats(UsageFilter(session_id=g1.id, tenant="acme")))[
        "totalInputTokens"
    ] == 0
    assert await u.events(UsageFilter(session_id=g1.id, tenant="acme")) == []
    events = await u.events(UsageFilter(tenant="globex"))
    assert {e["sessionId"] for e in events} == {g1.id}
    assert {e["tenantId"] for e in events} == {"globex"}
    assert (await u.stats(UsageFilter()))["totalInputTokens"] == 0  # default has none

    ev = EvalStore(db)
    await ev.create_run("bot", None, None, None, tenant="globex")
    seen = await u.analytics(None, None, "acme")
    assert seen["agents"] == {"total": 1}
    assert seen["sessions"] == {"total": 2, "byStatus": {"active": 1, "paused": 1}}
    assert seen["usage"] == acme
    assert seen["evals"] == {"totalRuns": 0, "byStatus": {}}
    theirs = await u.analytics(None, None, "globex")
    assert theirs["agents"] == {"total": 2} and theirs["sessions"]["total"] == 1
    assert theirs["usage"]["totalInputTokens"] == 400 and theirs["evals"]["totalRuns"] == 1


async def test_eval_cases_runs_and_results_are_their_tenants(db: Db) -> None:
    ev = EvalStore(db)
    case = await ev.create_case("bot", {"question": "q"}, tenant="acme")
    await ev.create_case("bot", {"question": "theirs"}, tenant="globex")
    cid = case["id"]
    assert await ev.get_case("bot", cid, tenant="globex") is None
    assert await ev.update_case("bot", cid, {"question": "x"}, tenant="globex") is None
    assert not await ev.delete_case("bot", cid, tenant="globex")
    assert [c["question"] for c in await ev.list_cases("bot", tenant="globex")] == ["theirs"]
    got = await ev.get_case("bot", cid, tenant="acme")
    assert got is not None and got["question"] == "q"  # untouched by the other tenant

    run = await ev.create_run("bot", None, None, None, tenant="acme")
    assert run["totalCases"] == 1  # only acme's case, not globex's of the same agent name
    rid = run["id"]
    result_id = (await ev.results(rid))[0]["id"]
    assert await ev.get_run("bot", rid, tenant="globex") is None
    assert await ev.list_runs("bot", tenant="globex") == []
    assert await ev.run_results("bot", rid, tenant="globex") is None
    assert await ev.compare("bot", rid, rid, tenant="globex") is None
    assert await ev.score("bot", rid, None, 5, "mine now", tenant="globex") is None
    assert await ev.patch_result("bot", result_id, 1, "nope", tenant="globex") is None
    results = await ev.run_results("bot", rid, tenant="acme")
    assert results is not None and results[0]["humanScore"] is None
    claimed = await ev.claim_run("owner", 60)
    assert claimed is not None and claimed["tenant_id"] == "acme"  # the runner's tenant
