"""The registry's services without Ray: capacity, lifecycle, recovery, sweep, drain.

Workers are :mod:`tests.unit.fake_ray` fakes; the store is a real SQLite file.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ash_ray.config import Settings, load_settings
from ash_ray.errors import AtCapacity, Conflict, SessionEnded, Unavailable, WorkerReleasing
from ash_ray.lifecycle_events import UNSAVED_SEQ_MARGIN
from ash_ray.models import EventRecord, MessageRecord, QueuedTurn, WriteBatch, utcnow
from ash_ray.registry.actor import Services
from ash_ray.registry.pool import SESSION_MEMORY_GUESS_MB, Demand, Placement
from ash_ray.registry.stats import RegistryStats
from ash_ray.registry.upkeep import remove_stale_workspaces
from ash_ray.store import open_store
from tests.unit.fake_ray import FakeRayOps


@pytest.fixture()
def agent_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "agent"
    folder.mkdir()
    (folder / "CLAUDE.md").write_text("You help.\n")
    return folder


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        data_dir=tmp_path / "data", warm_pool_size=0, max_sandboxes=2, capacity_wait_s=0,
        sweep_interval_s=3600, session_num_cpus=0.01, store_flush_ms=0,
        evict_grace_s=0,  # the grace after a create has its own test
    )


async def start(settings: Settings, ray_ops: FakeRayOps) -> Services:
    store = open_store(settings)
    await store.open()
    svc = Services.build(settings, store, ray_ops, RegistryStats())  # type: ignore[arg-type]
    ray_ops.sink = svc.core.record
    for worker in ray_ops.workers.values():
        worker.sink = svc.core.record
    await svc.start()
    return svc


@pytest.fixture()
async def ray_ops() -> FakeRayOps:
    return FakeRayOps()


@pytest.fixture()
async def svc(settings: Settings, ray_ops: FakeRayOps, agent_dir: Path) -> AsyncIterator[Services]:
    services = await start(settings, ray_ops)
    await services.agents.deploy("a", str(agent_dir))
    yield services
    await services.close()


async def create(svc: Services) -> str:
    return (await svc.lifecycle.create({"agent": "a"})).id


async def bound(svc: Services, *sids: str) -> None:
    """Wait (10 s at most) until each session's worker has started and bound."""
    for _ in range(1000):
        if all(svc.core.live[sid].node_id for sid in sids):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not bound: {sids}")


async def status(svc: Services, sid: str) -> str:
    await svc.core.flush()
    rec = await svc.core.store.get_session(sid)
    assert rec is not None
    return rec.status


async def open_turn(svc: Services, sid: str) -> None:
    """The store sees a turn that started and never ended (``session_start``, no ``done``)."""
    rec = await svc.core.record_of(sid)
    rec = rec.model_copy(update={"last_seq": rec.last_seq + 1})
    start = EventRecord(
        session_id=sid, seq=rec.last_seq, type="session_start", data={}, created_at=utcnow()
    )
    await svc.core.submit(rec, batch=WriteBatch(events=[start]))
    if sid in svc.core.live:
        svc.core.live[sid].record = rec


async def event_types(svc: Services, sid: str) -> list[str]:
    """The stored events' types; a lifecycle event as ``lifecycle:<action>``."""
    return [
        f"{e.type}:{e.data['action']}" if e.type == "lifecycle" else e.type
        for e in await svc.core.store.list_events(sid)
    ]


# ---------------------------------------------------------------- capacity


async def test_lru_idle_session_is_evicted_and_at_capacity_when_all_run(
    svc: Services, ray_ops: FakeRayOps
) -> None:
    a, b = await create(svc), await create(svc)
    await bound(svc, a, b)
    c = await create(svc)  # evicts a: idle and the oldest
    assert await status(svc, a) == "paused" and a not in svc.core.live
    assert ray_ops.killed == [a]
    for sid in (b, c):
        svc.core.live[sid].running = True
    with pytest.raises(AtCapacity, match="retry") as full:
        await create(svc)
    assert "2 live sessions of at most 2, 2 running a turn" in str(full.value)
    assert {b, c} == set(svc.core.live)  # a running session is never evicted


async def test_a_session_whose_worker_is_starting_is_not_evicted(
    svc: Services, ray_ops: FakeRayOps
) -> None:
    ray_ops.start_gate = asyncio.Event()
    a, b = await create(svc), await create(svc)  # both workers still starting
    with pytest.raises(AtCapacity, match="2 live sessions of at most 2"):
        await create(svc)
    assert {a, b} == set(svc.core.live) and ray_ops.killed == []
    ray_ops.start_gate.set()
    await bound(svc, a, b)
    c = await create(svc)  # now a is idle, and the oldest
    assert set(svc.core.live) == {b, c} and ray_ops.killed == [a]


async def test_concurrent_creates_never_pass_the_limit(
    svc: Services, ray_ops: FakeRayOps, monkeypatch: pytest.MonkeyPatch
) -> None:
    ray_ops.start_gate = asyncio.Event()  # no worker starts: none can be evicted either
    looked = ray_ops.available_resources

    async def slow_look() -> dict[str, float]:
        await asyncio.sleep(0)  # as a Ray call does: other creates run meanwhile
        return await looked()

    monkeypatch.setattr(ray_ops, "available_resources", slow_look)
    got = await asyncio.gather(*(create(svc) for _ in range(5)), return_exceptions=True)
    made = [g for g in got if isinstance(g, str)]
    assert len(made) == 2 and len(svc.core.live) == 2, got
    assert all(isinstance(g, AtCapacity) for g in got if not isinstance(g, str))
    assert svc.capacity.reserved == 0
    ray_ops.start_gate.set()


async def test_a_session_in_its_grace_is_evicted_last_and_never_refused_for(
    settings: Settings, ray_ops: FakeRayOps, agent_dir: Path
) -> None:
    svc = await start(settings.model_copy(update={"evict_grace_s": 600}), ray_ops)
    try:
        await svc.agents.deploy("a", str(agent_dir))
        a, b = await create(svc), await create(svc)
        await bound(svc, a, b)
        await svc.core.put_turn(
            QueuedTurn(session_id=b, message_id="m1", position=0, prompt="hi", state="running")
        )
        svc.core.live[b].running = False  # b's turn ended: b is an idle session past its grace
        c = await create(svc)  # a is the LRU one, but in its grace: b goes
        assert set(svc.core.live) == {a, c} and ray_ops.killed == [b]
        await bound(svc, c)
        # Both in their grace and idle: the LRU one goes rather than a 503 (Ash's
        # contract: 503 only when every session runs a turn).
        d = await create(svc)
        assert set(svc.core.live) == {c, d} and ray_ops.killed == [b, a]
    finally:
        await svc.close()


async def test_a_turn_the_worker_reports_makes_its_session_unevictable(
    svc: Services, ray_ops: FakeRayOps
) -> None:
    a, b = await create(svc), await create(svc)
    await bound(svc, a, b)
    await svc.core.put_turn(
        QueuedTurn(session_id=a, message_id="m1", position=0, prompt="hi", state="running")
    )
    c = await create(svc)  # a runs a turn (the store has it): b is evicted, not a
    assert set(svc.core.live) == {a, c} and ray_ops.killed == [b]


async def test_eviction_spares_a_session_whose_worker_has_just_started_a_turn(
    svc: Services, ray_ops: FakeRayOps
) -> None:
    a, b = await create(svc), await create(svc)
    await bound(svc, a, b)
    # a's worker has started a turn; its first flush has not reached the registry yet.
    ray_ops.workers[a].running = True
    assert not svc.core.live[a].running
    c = await create(svc)  # a is the LRU "idle" one, refuses; b goes instead
    assert set(svc.core.live) == {a, c} and ray_ops.killed == [b]
    assert "release" not in ray_ops.workers[a].calls  # its turn was not stopped
    assert svc.core.live[a].running and await status(svc, a) == "active"
    # Every worker runs a turn: the 503 counts them (the registry knew of neither).
    ray_ops.workers[c].running = True
    with pytest.raises(AtCapacity) as full:
        await create(svc)
    assert "2 live sessions of at most 2, 2 running a turn" in str(full.value)
    assert set(svc.core.live) == {a, c} and ray_ops.killed == [b]
    assert svc.capacity.figures()["running"] == 2


async def test_the_idle_sweep_spares_a_session_whose_worker_has_just_started_a_turn(
    svc: Services, ray_ops: FakeRayOps
) -> None:
    busy, idle = await create(svc), await create(svc)
    await bound(svc, busy, idle)
    ray_ops.workers[busy].running = True  # the registry has not heard yet
    assert await svc.upkeep.sweep(idle_timeout_s=0) == 1
    assert set(svc.core.live) == {busy} and await status(svc, busy) == "active"
    assert await status(svc, idle) == "paused"


async def test_an_attach_during_a_release_waits_for_it_then_resumes_on_a_new_worker(
    svc: Services, ray_ops: FakeRayOps
) -> None:
    # A message reaching a worker that releases its session gets WorkerReleasing and
    # attaches again: that attach must not hand back the releasing worker.
    sid = await create(svc)
    await bound(svc, sid)
    old = svc.core.live[sid]
    ray_ops.workers[sid].release_gate = gate = asyncio.Event()
    sweeping = asyncio.create_task(svc.upkeep.sweep(idle_timeout_s=0))  # idle: released
    for _ in range(1000):
        if "release" in ray_ops.workers[sid].calls:
            break
        await asyncio.sleep(0.01)
    assert old.releasing is not None
    attaching = asyncio.create_task(svc.lifecycle.attach(sid))
    await asyncio.sleep(0)  # (a turn of the loop: the attach is now waiting, not done)
    assert not attaching.done()
    gate.set()
    assert await sweeping == 1
    live = await asyncio.wait_for(attaching, 10)
    assert live is not old and live.worker is not old.worker  # a new worker, resumed
    assert svc.core.live[sid] is live and await status(svc, sid) == "active"


def _evicted_after_resume(svc: Services, times: int) -> list[str]:
    """The first ``times`` resumes lose the session's worker again before they return, as
    an eviction by a create short of slots does (the resumed session is idle)."""
    resume, resumed = svc.lifecycle.resume, []

    async def losing(session_id: str, auto: bool = False) -> Any:
        rec = await resume(session_id, auto)
        resumed.append(session_id)
        if len(resumed) <= times:
            await svc.core.release_idle(svc.core.live[session_id])
        return rec

    svc.lifecycle.resume = losing  # type: ignore[method-assign]
    return resumed


async def _paused(svc: Services) -> str:
    """A session whose worker started and bound, then paused."""
    sid = await create(svc)
    await bound(svc, sid)
    await svc.lifecycle.pause(sid)
    return sid


async def test_an_attach_resumes_again_a_session_evicted_as_it_was_resumed(
    svc: Services, ray_ops: FakeRayOps
) -> None:
    sid = await _paused(svc)
    resumed = _evicted_after_resume(svc, times=1)
    live = await svc.lifecycle.attach(sid)
    assert resumed == [sid, sid] and svc.core.live[sid] is live
    assert await status(svc, sid) == "active"


async def test_an_attach_that_keeps_losing_its_worker_is_a_503_naming_why(
    svc: Services, ray_ops: FakeRayOps
) -> None:
    sid = await _paused(svc)
    _evicted_after_resume(svc, times=100)
    with pytest.raises(Unavailable, match="short of session slots"):
        await svc.lifecycle.attach(sid)


async def test_a_create_answers_before_its_new_worker_has_started(
    svc: Services, ray_ops: FakeRayOps
) -> None:
    ray_ops.start_gate = asyncio.Event()
    sid = await asyncio.wait_for(create(svc), 5)  # the worker's process has not started
    worker = ray_ops.workers[sid]
    assert "bind" not in worker.calls and await status(svc, sid) == "active"
    ray_ops.start_gate.set()
    for _ in range(1000):  # polling with a deadline (10 s) until the bind has run
        if "bind" in worker.calls:
            break
        await asyncio.sleep(0.01)
    assert worker.calls.index("ready") < worker.calls.index("bind")
    assert svc.core.live[sid].node_id == "node-a"


async def test_spares_wait_while_every_core_starts_a_worker_a_session_waits_for(
    settings: Settings, agent_dir: Path
) -> None:
    ray_ops = FakeRayOps(cpus=2)
    svc = await start(settings.model_copy(update={"max_sandboxes": 10}), ray_ops)
    try:
        await svc.agents.deploy("a", str(agent_dir))
        ray_ops.start_gate = asyncio.Event()  # no process gets going
        sids = [await create(svc) for _ in range(3)]  # 3 starts, a burst the pool missed
        pool = svc.capacity.pool
        assert pool.demand.target() >= 1  # the create rate asks for a spare...
        assert pool._refill is not None
        await asyncio.wait_for(pool._refill, 5)
        assert ray_ops.spawned == sids  # ...which waits: both cores start sessions' workers
        ray_ops.start_gate.set()
        for _ in range(1000):  # polling with a deadline (10 s) until the spare is asked for
            if len(ray_ops.spawned) > len(sids):
                break
            await asyncio.sleep(0.01)
        assert len(ray_ops.spawned) == len(sids) + 1
    finally:
        await svc.close()


def test_the_pool_follows_the_create_rate_within_its_bounds(settings: Settings) -> None:
    demand = Demand(settings.model_copy(update={"warm_pool_size": 1, "warm_pool_max": 4}))
    demand.start_s = 4.0
    assert demand.target() == 1  # no creates: the configured pool
    for _ in range(3):  # 0.1 creates/s x 4 s a start
        demand.took()
    assert demand.target() == 1
    for _ in range(27):  # 1 create/s x 4 s a start
        demand.took()
    assert demand.target() == 4
    for _ in range(100):
        demand.took()
    assert demand.target() == 4  # never past warm_pool_max
    for _ in range(130):
        demand.returned()  # as many released workers came back: churn needs no new ones
    assert demand.target() == 1


def test_a_burst_of_starts_sharing_the_cores_does_not_inflate_the_pool(settings: Settings) -> None:
    """24 creates at once on 2 cores: each start waits behind the others (about 12 times
    one start's 4 s); the pool sizes its spares by one start's time, not by the queue's."""
    bounds = {"warm_pool_size": 2, "warm_pool_max": 8}
    shared, alone = (Demand(settings.model_copy(update=bounds)) for _ in range(2))
    for demand in (shared, alone):
        demand.start_s = 4.0
        for _ in range(24):
            demand.took()
    for _ in range(24):
        shared.started(48.0, per_core=12)
        alone.started(48.0)
    assert shared.target() == 4  # 0.8 creates/s over the window x 4 s a start
    assert alone.target() == 8  # 48 s a start would have filled the pool to its maximum


def test_the_default_session_limit_follows_the_cluster_memory(settings: Settings) -> None:
    auto = Placement(settings.model_copy(update={"max_sandboxes": 0}), FakeRayOps())  # type: ignore[arg-type]
    auto.memory_total = 4 * 2**30
    assert auto.session_limit == 4 * 1024 // SESSION_MEMORY_GUESS_MB
    reserved = settings.model_copy(update={"max_sandboxes": 0, "session_memory_mb": 512})
    sized = Placement(reserved, FakeRayOps())  # type: ignore[arg-type]
    sized.memory_total = 4 * 2**30
    assert sized.session_limit == 8
    assert Placement(settings, FakeRayOps()).session_limit == 2  # type: ignore[arg-type]


async def test_a_waiting_create_gets_the_slot_when_a_turn_ends(
    settings: Settings, ray_ops: FakeRayOps, agent_dir: Path
) -> None:
    svc = await start(settings.model_copy(update={"capacity_wait_s": 30}), ray_ops)
    try:
        await svc.agents.deploy("a", str(agent_dir))
        a, b = await create(svc), await create(svc)
        await bound(svc, a, b)
        for sid in (a, b):
            svc.core.live[sid].running = True
        waiting = asyncio.create_task(create(svc))
        for _ in range(1000):  # polling with a deadline (10 s) until the create waits
            if svc.capacity.waiting == 1:
                break
            await asyncio.sleep(0.01)
        assert svc.capacity.waiting == 1 and not waiting.done()
        svc.core.live[a].running = False  # a's turn ends: it may be evicted now
        third = await asyncio.wait_for(waiting, 10)
        assert set(svc.core.live) == {b, third}
    finally:
        await svc.close()


# ---------------------------------------------------------------- lifecycle


async def test_pause_resume_stop_end_and_locks_are_dropped(
    svc: Services, ray_ops: FakeRayOps
) -> None:
    sid = await create(svc)
    await asyncio.sleep(0)  # the unwaited bind runs
    assert (await svc.lifecycle.pause(sid)).status == "paused"
    assert await svc.core.store.get_snapshot(sid) == b"tar"  # pause snapshots
    worker = svc.core.live[sid].worker
    assert (await svc.lifecycle.resume(sid)).status == "active"
    assert svc.core.live[sid].worker is worker  # warm: a state flip, same worker
    assert (await svc.lifecycle.stop(sid)).status == "stopped"
    assert sid not in svc.core.live and ray_ops.killed == [sid]
    resumed = await svc.lifecycle.resume(sid)  # cold: a new worker
    assert resumed.status == "active" and resumed.sandbox_id != sid
    assert (await svc.lifecycle.end(sid)).status == "ended"
    with pytest.raises(SessionEnded):
        await svc.lifecycle.resume(sid)
    assert len(svc.core.locks) == 0


async def test_a_released_worker_serves_the_next_session_and_refuses_the_old_one(
    svc: Services, ray_ops: FakeRayOps
) -> None:
    ray_ops.reusable = True
    a = await create(svc)
    await bound(svc, a)
    old = svc.core.live[a].worker  # a caller's handle on session a
    assert (await svc.lifecycle.stop(a)).status == "stopped"
    assert ray_ops.killed == [] and ray_ops.workers[a].calls[-1] == "unbind"
    b = await create(svc)
    await bound(svc, b)
    assert ray_ops.spawned == [a]  # no new process: a's worker serves b
    assert svc.core.live[b].record.sandbox_id == a and b != a  # b has an id of its own
    with pytest.raises(WorkerReleasing):
        await old.describe()  # the stale handle reaches nothing of b
    assert (await svc.core.live[b].worker.describe())["sessionId"] == b
    resumed = await svc.lifecycle.resume(a)  # a itself comes back on another worker
    assert resumed.sandbox_id not in (a, "") and ray_ops.spawned[-1] == resumed.sandbox_id


async def test_a_worker_is_retired_after_worker_reuse_sessions(
    tmp_path: Path, agent_dir: Path, ray_ops: FakeRayOps
) -> None:
    settings = load_settings(
        data_dir=tmp_path / "data", warm_pool_size=0, capacity_wait_s=0, worker_reuse=2,
        sweep_interval_s=3600, store_flush_ms=0, evict_grace_s=0,
    )
    ray_ops.reusable = True
    svc = await start(settings, ray_ops)
    await svc.agents.deploy("a", str(agent_dir))
    try:
        first = await create(svc)
        await bound(svc, first)
        await svc.lifecycle.end(first)
        second = await create(svc)
        await bound(svc, second)
        assert ray_ops.spawned == [first] and ray_ops.killed == []
        await svc.lifecycle.end(second)  # its second session: retired, not reused
        assert ray_ops.killed == [first] and svc.capacity.pool.idle == []
    finally:
        await svc.close()


async def test_the_worker_of_an_evicted_session_serves_the_create_that_evicted_it(
    svc: Services, ray_ops: FakeRayOps
) -> None:
    ray_ops.reusable = True
    a, b = await create(svc), await create(svc)  # max_sandboxes=2
    await bound(svc, a, b)
    c = await create(svc)  # evicts a, the least recently active
    await bound(svc, c)
    assert set(svc.core.live) == {b, c} and ray_ops.killed == []
    assert ray_ops.spawned == [a, b] and svc.core.live[c].record.sandbox_id == a


async def test_a_state_change_in_progress_refuses_another(svc: Services) -> None:
    sid = await create(svc)
    async with svc.core.locks.hold(sid):
        with pytest.raises(Conflict, match="another call"):
            await svc.lifecycle.pause(sid)
    assert len(svc.core.locks) == 0


async def test_fork_copies_conversation_and_snapshot(svc: Services) -> None:
    sid = await create(svc)
    child = await svc.lifecycle.fork(sid)
    assert child.parent_session_id == sid and child.status == "active"
    assert await svc.core.store.get_snapshot(child.id) == b"tar"


async def test_drain_pauses_everything_and_refuses_new_sessions(svc: Services) -> None:
    a, b = await create(svc), await create(svc)
    result = await svc.upkeep.drain(5)
    assert result.paused == 2 and result.failed == []
    assert [await status(svc, s) for s in (a, b)] == ["paused", "paused"]
    with pytest.raises(Unavailable):
        await create(svc)


# ---------------------------------------------------------------- crashes


async def test_a_crash_mid_turn_comes_back_paused_with_the_turn_closed(
    settings: Settings, agent_dir: Path
) -> None:
    first = FakeRayOps()
    svc = await start(settings, first)
    await svc.agents.deploy("a", str(agent_dir))
    busy, idle = await create(svc), await create(svc)
    await open_turn(svc, busy)
    await svc.core.flush()
    await svc.close()
    for worker in first.alive():  # kill -9 of the whole cluster
        worker.kill()

    again = await start(settings, FakeRayOps())
    try:
        assert await status(again, busy) == "paused"  # not error: resumable
        assert await event_types(again, busy) == [
            "lifecycle:created", "session_start", "error", "done",
        ]  # fmt: skip
        assert await status(again, idle) == "paused"
        assert await event_types(again, idle) == ["lifecycle:created"]
        assert (await again.lifecycle.resume(busy)).status == "active"
    finally:
        await again.close()


async def _crash_with_a_turn_running(
    settings: Settings, agent_dir: Path, prompt_saved: bool
) -> Services:
    """A session whose turn started (its running row and ``session_start`` saved), then
    a kill -9 of the whole cluster; with ``prompt_saved``, the prompt reached the store
    (its message, and the ``message`` event it is saved with) before the kill."""
    first = FakeRayOps()
    svc = await start(settings, first)
    await svc.agents.deploy("a", str(agent_dir))
    sid = await create(svc)
    await open_turn(svc, sid)
    turn = QueuedTurn(session_id=sid, message_id="m1", position=1, prompt="the prompt",
                      state="running")
    batch = WriteBatch(turns=[turn])
    if prompt_saved:
        rec = await svc.core.record_of(sid)
        rec = rec.model_copy(update={"last_seq": rec.last_seq + 1})
        batch.events.append(EventRecord(
            session_id=sid, seq=rec.last_seq, type="message", data={"type": "user"},
            created_at=utcnow(),
        ))
        batch.messages.append(MessageRecord(
            id="u1", session_id=sid, sequence=1, role="user", content="the prompt",
            created_at=utcnow(),
        ))
        svc.core.live[sid].record = rec
        await svc.core.submit(rec, batch=batch)
    else:
        await svc.core.submit(batch=batch)
    await svc.core.flush()
    await svc.close()
    for worker in first.alive():
        worker.kill()
    return await start(settings, FakeRayOps())


@pytest.mark.parametrize("prompt_saved", [False, True])
async def test_a_prompt_acknowledged_before_a_crash_is_in_the_conversation_after_it(
    settings: Settings, agent_dir: Path, prompt_saved: bool
) -> None:
    again = await _crash_with_a_turn_running(settings, agent_dir, prompt_saved)
    try:
        (sid,) = [s.id for s in await again.core.store.list_sessions()]
        messages = await again.core.store.list_messages(sid)
        # Once, whether or not the crash came before the conversation's save.
        assert [(m.sequence, m.role, m.content) for m in messages] == [(1, "user", "the prompt")]
        assert (await event_types(again, sid))[-2:] == ["error", "done"]
        assert await status(again, sid) == "paused"
    finally:
        await again.close()


async def test_a_registry_restart_adopts_live_workers_and_kills_orphans(
    settings: Settings, ray_ops: FakeRayOps, agent_dir: Path
) -> None:
    svc = await start(settings, ray_ops)
    await svc.agents.deploy("a", str(agent_dir))
    sid = await create(svc)
    await asyncio.sleep(0)  # bound
    await svc.core.flush()
    await svc.close()
    orphan = await ray_ops.spawn("orphan", {})  # an unbound pool worker of the old registry

    again = await start(settings, ray_ops)
    try:
        assert again.core.live[sid].worker.handle.worker is ray_ops.workers[sid]
        assert await status(again, sid) == "active"
        assert not orphan.handle.worker.alive and ray_ops.killed == ["orphan"]
    finally:
        await again.close()


async def test_a_worker_seen_dying_pauses_the_session_once(
    svc: Services, ray_ops: FakeRayOps
) -> None:
    sid = await create(svc)
    await open_turn(svc, sid)
    ray_ops.workers[sid].kill()
    ends = await svc.recovery.worker_failed(sid, 2)
    # Numbered past what the lost worker may have shown unsaved.
    past = 2 + UNSAVED_SEQ_MARGIN
    assert [(seq, type_) for seq, type_, _ in ends] == [(past + 1, "error"), (past + 2, "done")]
    assert await status(svc, sid) == "paused"
    # Another stream of the same turn (or the sweep) closes nothing twice.
    assert await svc.recovery.worker_failed(sid, 2) == ends
    await svc.upkeep.sweep()
    assert await event_types(svc, sid) == ["lifecycle:created", "session_start", "error", "done"]


async def test_a_turn_closed_for_a_lost_worker_is_numbered_past_what_a_client_saw(
    svc: Services, ray_ops: FakeRayOps
) -> None:
    sid = await create(svc)
    await open_turn(svc, sid)  # stored up to seq 2
    live = svc.core.live[sid]
    ray_ops.workers[sid].kill()
    await svc.recovery.as_cold(live)  # the death watch closes the turn, from the store alone
    # A client that saw seq 3 (shown by the worker, never saved) still gets the turn's end.
    ends = await svc.recovery.worker_failed(sid, 3)
    assert [type_ for _, type_, _ in ends] == ["error", "done"]
    assert min(seq for seq, _, _ in ends) > 3


async def test_sweep_pauses_idle_sessions_and_notices_dead_workers(
    svc: Services, ray_ops: FakeRayOps
) -> None:
    dead, idle = await create(svc), await create(svc)
    await open_turn(svc, dead)
    ray_ops.workers[dead].kill()
    assert await svc.upkeep.sweep(idle_timeout_s=0) == 1
    assert not svc.core.live
    assert await status(svc, dead) == "paused" and await status(svc, idle) == "paused"
    assert await event_types(svc, dead) == ["lifecycle:created", "session_start", "error", "done"]
    assert not ray_ops.workers[idle].alive


def test_stale_workspaces_go_and_live_ones_stay(tmp_path: Path) -> None:
    old = time.time() - 3600
    for name in ("stale", "live", "fresh"):
        (tmp_path / name).mkdir()
    for name in ("stale", "live"):
        os.utime(tmp_path / name, (old, old))
    remove_stale_workspaces(tmp_path, 60, keep={"live"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "live"]


async def test_a_session_stopped_before_its_worker_started_does_not_wait_for_it(
    svc: Services, ray_ops: FakeRayOps
) -> None:
    ray_ops.start_gate = asyncio.Event()  # the worker's process never gets going
    sid = await create(svc)
    stopped = await asyncio.wait_for(svc.lifecycle.stop(sid), 5)
    assert stopped.status == "stopped" and sid not in svc.core.live
    assert ray_ops.killed == [sid] and "bind" not in ray_ops.workers[sid].calls
    ray_ops.start_gate.set()  # the killed worker's bind now fails
    for _ in range(1000):  # polling with a deadline (10 s) until it has
        if "bind" in ray_ops.workers[sid].calls:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0)  # the failed bind's handler runs
    assert await status(svc, sid) == "stopped"  # not "error" from the bind it never ran


# ---------------------------------------------------------------- lifecycle events


async def lifecycle_rows(svc: Services, sid: str) -> list[tuple[int, dict[str, Any]]]:
    await svc.core.flush()
    return [(e.seq, e.data) for e in await svc.core.store.list_events(sid) if e.type == "lifecycle"]


async def test_the_registry_numbers_lifecycle_events_of_sessions_without_a_worker(
    svc: Services, ray_ops: FakeRayOps
) -> None:
    sid = await create(svc)
    assert await lifecycle_rows(svc, sid) == [
        (1, {"action": "created", "agentName": "a", "model": None}),
    ]  # fmt: skip
    rec = await svc.core.store.get_session(sid)
    assert rec is not None and rec.last_seq == 1  # the worker numbers on from there
    assert svc.core.live[sid].record.last_seq == 1
    await asyncio.sleep(0)  # the unwaited bind runs
    first = ray_ops.workers[sid]
    # Live: the worker is asked to number them into its own log.
    await svc.lifecycle.pause(sid)
    await svc.lifecycle.resume(sid)
    await svc.lifecycle.stop(sid)
    for _ in range(1000):  # the warm resume's call is not awaited: poll (10 s deadline)
        if len(first.lifecycle) == 3:
            break
        await asyncio.sleep(0.01)
    assert first.lifecycle == [
        {"action": "paused"},
        {"action": "resumed", "path": "warm", "source": "sandbox"},
        {"action": "stopped"},
    ]  # fmt: skip
    # Cold: the registry writes them, each after the record's last_seq, in one write.
    await svc.lifecycle.resume(sid)  # a new worker, from the stored snapshot
    second = svc.core.live[sid].worker
    assert (await svc.core.record_of(sid)).last_seq == 2
    for _ in range(1000):  # its bind is not awaited: poll (10 s deadline)
        if svc.core.live[sid].node_id:
            break
        await asyncio.sleep(0.01)
    await svc.lifecycle.stop(sid)
    await svc.lifecycle.end(sid)  # a stopped session: no worker
    rows = await lifecycle_rows(svc, sid)
    assert rows == [
        (1, {"action": "created", "agentName": "a", "model": None}),
        (2, {"action": "resumed", "path": "cold", "source": "store"}),
        (3, {"action": "ended"}),
    ]  # fmt: skip
    assert second.handle.worker.lifecycle == [{"action": "stopped"}]  # type: ignore[attr-defined]
    rec = await svc.core.store.get_session(sid)
    assert rec is not None and rec.last_seq == 3 and rec.status == "ended"


async def test_a_fork_copies_the_log_and_adds_forked_after_it(svc: Services) -> None:
    sid = await create(svc)
    await svc.lifecycle.stop(sid)
    await svc.core.flush()
    child = await svc.lifecycle.fork(sid)
    assert child.last_seq == 2
    assert await lifecycle_rows(svc, child.id) == [
        (1, {"action": "created", "agentName": "a", "model": None}),
        (2, {"action": "forked", "parentSessionId": sid}),
    ]  # fmt: skip


async def test_a_worker_lost_after_done_and_a_pause_closes_no_turn(
    svc: Services, ray_ops: FakeRayOps
) -> None:
    sid = await create(svc)
    await open_turn(svc, sid)  # session_start at 2
    rec = await svc.core.record_of(sid)
    tail = [
        EventRecord(session_id=sid, seq=3, type="done", data={}, created_at=utcnow()),
        EventRecord(session_id=sid, seq=4, type="lifecycle", data={"action": "paused"},
                    created_at=utcnow()),
    ]  # fmt: skip
    rec = rec.model_copy(update={"last_seq": 4, "status": "paused"})
    await svc.core.submit(rec, batch=WriteBatch(events=tail))
    svc.core.live[sid].record = rec
    ray_ops.workers[sid].kill()
    # A stream that saw session_start gets the turn's end, not a made-up error.
    ends = await svc.recovery.worker_failed(sid, 2)
    assert [t for _, t, _ in ends] == ["done"]
    await svc.upkeep.sweep()
    assert await event_types(svc, sid) == [
        "lifecycle:created", "session_start", "done", "lifecycle:paused",
    ]  # fmt: skip
    assert await status(svc, sid) == "paused"
