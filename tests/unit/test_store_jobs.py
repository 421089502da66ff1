"""Queue items and usage figures in the Store, on SQLite and a real throwaway Postgres."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from ash_ray.models import SessionRecord, Usage, UsageRecord, WriteBatch
from ash_ray.store._sql import Db
from ash_ray.store.queue import QueueStore
from ash_ray.store.usage import UsageFilter, UsageQueries

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


async def add(q: QueueStore, prompt: str, priority: int = 0, retries: int = 3) -> str:
    item = await q.add(agent_name="a", prompt=prompt, session_id=None, priority=priority,
                       max_retries=retries)
    return str(item["id"])


async def test_claim_takes_priority_then_age_and_never_twice(db: Db) -> None:
    q = QueueStore(db)
    low = await add(q, "low")
    high1 = await add(q, "high1", priority=5)
    high2 = await add(q, "high2", priority=5)
    claimed = await asyncio.gather(*(q.claim(f"w{i}", 60) for i in range(5)))
    ids = [c["id"] for c in claimed if c is not None]
    assert sorted(ids) == sorted([low, high1, high2])  # each item to exactly one claimer
    assert sum(c is None for c in claimed) == 2
    q2 = QueueStore(db)
    for item_id in ids:
        assert (await q2.get(item_id))["status"] == "processing"  # type: ignore[index]
    # The order: priority first, then age.
    db2 = QueueStore(db)
    await db.fetch("reset", "UPDATE queue_items SET status = 'pending', lease_owner = NULL")
    order = [(await db2.claim("one", 60)) for _ in range(3)]
    assert [o["prompt"] for o in order if o] == ["high1", "high2", "low"]


async def test_lease_protects_the_item_until_it_expires(db: Db) -> None:
    q = QueueStore(db)
    item_id = await add(q, "p")
    first = await q.claim("cluster-a", 60)
    assert first is not None and first["id"] == item_id
    assert await q.claim("cluster-b", 60) is None  # leased to a
    assert not await q.complete(item_id, "cluster-b", "x")  # b holds no lease
    await db.fetch("expire", "UPDATE queue_items SET lease_expires_at = ?",
                   (db.ts(datetime.now(UTC) - timedelta(seconds=5)),))
    second = await q.claim("cluster-b", 60)
    assert second is not None and second["id"] == item_id
    assert not await q.complete(item_id, "cluster-a", "late")  # a lost its lease
    assert await q.complete(item_id, "cluster-b", "done")
    got = await q.get(item_id)
    assert got is not None and got["status"] == "completed" and got["result"] == "done"


async def test_the_queue_remembers_only_the_sessions_it_opened(db: Db) -> None:
    q = QueueStore(db)
    opened = await add(q, "opened")
    named = await q.add(agent_name="a", prompt="named", session_id="user-s", priority=0,
                        max_retries=0)
    assert await q.claim("w", 60) is not None and await q.claim("w", 60) is not None
    assert await q.set_session(opened, "w", "queue-s", 0, own=True)
    assert await q.set_session(opened, "w", "queue-s", 1)  # a later baseline keeps the mark
    assert await q.set_session(named["id"], "w", "user-s", 3)
    assert not await q.set_session(opened, "other", "queue-s", 2, own=True)  # no lease
    got = {i: await q.get(i) for i in (opened, named["id"])}
    assert got[opened]["own_session"] == 1 and got[opened]["turn_base"] == 1  # type: ignore[index]
    assert got[named["id"]]["own_session"] == 0  # type: ignore[index]


async def test_restarted_owner_takes_its_items_back_at_once(db: Db) -> None:
    q = QueueStore(db)
    item_id = await add(q, "p")
    assert await q.claim("jobs-1", 600) is not None
    assert await q.claim("jobs-1", 600) is None
    assert await q.expire_leases("jobs-1") == 1
    again = await q.claim("jobs-1", 600)
    assert again is not None and again["id"] == item_id


async def test_fail_retries_later_then_fails(db: Db) -> None:
    q = QueueStore(db)
    item_id = await add(q, "p", retries=1)
    assert await q.claim("w", 60) is not None
    later = datetime.now(UTC) + timedelta(hours=1)
    assert await q.fail(item_id, "w", "boom", later)
    got = await q.get(item_id)
    assert got is not None and got["status"] == "pending" and got["retry_count"] == 1
    assert await q.claim("w", 60) is None  # not due yet
    await db.fetch("due", "UPDATE queue_items SET next_attempt_at = ?",
                   (db.ts(datetime.now(UTC) - timedelta(seconds=1)),))
    assert await q.claim("w", 60) is not None
    assert await q.fail(item_id, "w", "boom again", None)
    got = await q.get(item_id)
    assert got is not None and got["status"] == "failed" and got["error"] == "boom again"
    assert got["completed_at"] is not None


async def test_cancel_list_and_stats_are_per_tenant(db: Db) -> None:
    q = QueueStore(db)
    a = await add(q, "a")
    b = await add(q, "b")
    other = await q.add(agent_name="a", prompt="x", session_id=None, priority=0,
                        max_retries=0, tenant="t2")
    assert (await q.cancel(a)) is not None
    assert await q.cancel(a) is None  # no longer pending
    assert await q.cancel(other["id"]) is None  # another tenant's
    assert await q.get(other["id"]) is None
    stats = await q.stats()
    assert stats == {"pending": 1, "processing": 0, "completed": 0, "failed": 0,
                     "cancelled": 1}
    assert [i["id"] for i in await q.list()] == [b, a]
    assert [i["id"] for i in await q.list(status="cancelled")] == [a]
    assert [i["id"] for i in await q.list(limit=1)] == [b]


def _usage(sid: str, agent: str, turn: int, n: int, at: datetime) -> UsageRecord:
    return UsageRecord(
        session_id=sid, agent_name=agent, turn=turn, model="m", created_at=at,
        usage=Usage(input_tokens=10 * n, output_tokens=n, cache_creation_input_tokens=2 * n,
                    cache_read_input_tokens=3 * n),
        tool_calls=n, messages=1, compute_ms=1500 * n,
    )


async def test_usage_events_and_exact_sums(db: Db) -> None:
    s1, s2 = str(uuid.uuid4()), str(uuid.uuid4())
    recs = [_usage(s1, "a", 1, 1, T0), _usage(s1, "a", 2, 2, T0 + timedelta(seconds=1)),
            _usage(s2, "b", 1, 4, T0 + timedelta(seconds=2))]
    sessions = [
        SessionRecord(id=s, agent_name=ag, sandbox_id=s, status=st, created_at=T0,
                      last_active_at=T0)
        for s, ag, st in ((s1, "a", "active"), (s2, "b", "paused"))
    ]
    await db.store.write(WriteBatch(sessions=sessions, usage=recs))
    u = UsageQueries(db)
    everything = await u.stats(UsageFilter())
    assert everything == {
        "totalInputTokens": 70, "totalOutputTokens": 7, "totalCacheCreationTokens": 14,
        "totalCacheReadTokens": 21, "totalToolCalls": 7, "totalMessages": 3,
        "totalComputeSeconds": 10.5,
    }
    assert (await u.stats(UsageFilter(session_id=s1)))["totalInputTokens"] == 30
    assert (await u.stats(UsageFilter(agent_name="b")))["totalOutputTokens"] == 4
    window = UsageFilter(after=T0 + timedelta(seconds=1), before=T0 + timedelta(seconds=1))
    assert (await u.stats(window))["totalMessages"] == 1
    events = await u.events(UsageFilter(session_id=s1))
    assert len(events) == 14  # 7 counters x 2 turns, all above zero
    assert events[0]["createdAt"] == T0 + timedelta(seconds=1)  # newest first
    by_type = {(e["eventType"], e["value"]) for e in events if e["createdAt"] == T0}
    assert ("input_tokens", 10) in by_type and ("compute_seconds", 1.5) in by_type
    assert events == await u.events(UsageFilter(session_id=s1))  # stable ids
    assert len(await u.events(UsageFilter(), limit=5)) == 5
    analytics = await u.analytics(None, None)
    assert analytics["sessions"] == {"total": 2, "byStatus": {"active": 1, "paused": 1}}
    assert analytics["usage"] == everything


async def test_eval_cases_runs_results_in_the_store(db: Db) -> None:
    from ash_ray.store.evals import EvalStore

    ev = EvalStore(db)
    a = await ev.create_case("bot", {"question": "q1", "expectedTopics": ["x"],
                                     "category": "c", "tags": ["t"]})
    await ev.import_cases("bot", [{"question": "q2", "category": "d"},
                                  {"question": "q3", "isActive": False}])
    assert [c["question"] for c in await ev.list_cases("bot")] == ["q1", "q2", "q3"]
    assert [c["question"] for c in await ev.list_cases("bot", category="c")] == ["q1"]
    assert [c["question"] for c in await ev.list_cases("bot", is_active=False)] == ["q3"]
    assert await ev.list_cases("bot", tenant="other") == []
    patched = await ev.update_case("bot", a["id"], {"tags": ["u"], "isActive": True})
    assert patched is not None and patched["tags"] == ["u"] and patched["expectedTopics"] == ["x"]
    run = await ev.create_run("bot", 1, None, None)
    assert run["totalCases"] == 2 and run["status"] == "pending" and run["passRate"] == 0
    claimed = await ev.claim_run("owner", 60)
    assert claimed is not None and claimed["id"] == run["id"]
    assert await ev.claim_run("someone-else", 60) is None
    work = await ev.pending_work(run["id"])
    assert [w["question"] for w in work] == ["q1", "q2"]
    await ev.finish_result(work[0]["result_id"], {"status": "completed", "topic_score": 1.0,
                                                  "safety_score": 1.0, "passed": 1})
    await ev.finish_result(work[1]["result_id"], {"status": "completed", "topic_score": 0.0,
                                                  "safety_score": 1.0, "passed": 0})
    assert await ev.finish_run(run["id"], "owner")
    got = await ev.get_run("bot", run["id"])
    assert got is not None and got["status"] == "completed" and got["passRate"] == 0.5
    assert got["avgTopicScore"] == 0.5 and got["completedCases"] == 2
    scored = await ev.score("bot", run["id"], None, 3, "ok")
    assert scored is not None and scored[0] == 2
    one = await ev.patch_result("bot", work[0]["result_id"], 5, None)
    assert one is not None and one["humanScore"] == 5 and one["humanNotes"] is None
    cmp = await ev.compare("bot", run["id"], run["id"])
    assert cmp is not None and len(cmp["results"]) == 2
    assert await ev.delete_case("bot", a["id"]) and not await ev.delete_case("bot", a["id"])
    assert (await u_analytics(db))["evals"] == {"totalRuns": 1, "byStatus": {"completed": 1}}


async def u_analytics(db: Db) -> dict[str, object]:
    return await UsageQueries(db).analytics(None, None)
