"""The registry: a detached named actor that owns agents, the session index and lifecycle.

It is the only creator and killer of session workers, enforces capacity, keeps the warm
pool, sweeps idle sessions, and writes everything behind to the Store. On (re)start it
loads its state from the Store, so a restart loses nothing the Store has.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from ash_ray.agent import load_agent
from ash_ray.config import Settings
from ash_ray.errors import (
    AgentInvalid,
    AgentNotFound,
    AtCapacity,
    Conflict,
    SessionBusy,
    SessionEnded,
    SessionNotFound,
    Unavailable,
)
from ash_ray.models import (
    AgentRecord,
    EventRecord,
    MessageRecord,
    SessionConfig,
    SessionRecord,
    WriteBatch,
    new_id,
    utcnow,
)
from ash_ray.names import REGISTRY_NAME, actor_name
from ash_ray.registry.pool import Placement, Worker, WorkerPool
from ash_ray.registry.stats import RegistryStats
from ash_ray.registry.writer import WriteBehind
from ash_ray.store.base import Store

logger = logging.getLogger(__name__)

__all__ = ["REGISTRY_NAME", "Registry"]

LIVE_STATUSES = ("starting", "active", "paused")
# Agents change rarely and only through a registry; another cluster's registry on the same
# database (a blue/green upgrade) is seen within this many seconds.
AGENT_CACHE_S = 5.0


@dataclass
class Live:
    """A session that has a worker right now."""

    record: SessionRecord
    handle: Any
    running: bool = False
    node_id: str = ""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Set by the death watch: the worker process is gone.
    dead: bool = False
    # A status the registry set without waiting for the worker; its flushes follow it.
    pending_status: str | None = None


class Registry:
    """See the module docstring. Methods are called with ``.remote()``; all are async."""

    def __init__(
        self,
        settings: Settings,
        worker_cls: type,
        store_factory: Callable[[Settings], Store],
    ) -> None:
        self.settings = settings
        self.store_factory = store_factory
        self.started_at = time.time()
        self.stats = RegistryStats()
        self.stats.max_capacity.set(settings.max_sandboxes)
        self.store: Store | None = None
        self.writer: WriteBehind | None = None
        self.placement = Placement(settings)
        self.pool = WorkerPool(settings, self.placement, worker_cls, self._worker_count)
        self.live: dict[str, Live] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.accepting = True
        self.waiting = 0
        self._init: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._background_tasks: set[asyncio.Task[None]] = set()
        self._agents: dict[str, tuple[float, AgentRecord]] = {}

    # ------------------------------------------------------------------ start

    async def _ready(self) -> Store:
        if self._init is None:
            self._init = asyncio.create_task(self._start())
        await asyncio.shield(self._init)
        assert self.store is not None
        return self.store

    async def _start(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = self.store_factory(self.settings)
        await store.open()
        self.store = store
        self.writer = WriteBehind(store, self.settings.store_flush_ms)
        self.writer.start()
        self.placement.refresh()
        await self._recover()
        self._tasks.append(asyncio.create_task(self._sweep_loop()))
        self.pool.refill_soon()
        logger.info(
            "registry ready: store=%s live=%d slots=%s",
            store.kind, len(self.live), self.placement.slots_total or "undeclared",
        )

    async def ping(self) -> dict[str, Any]:
        await self._ready()
        return {"ok": True, "live": len(self.live), "pid": __import__("os").getpid()}

    async def _recover(self) -> None:
        """Adopt workers that outlived a registry restart; the rest become cold."""
        assert self.store is not None and self.writer is not None
        fixes: list[SessionRecord] = []
        for status in LIVE_STATUSES:
            for rec in await self._all_sessions(status):
                handle = await self._alive(rec.sandbox_id)
                if handle is not None:
                    info = await handle.describe.remote()
                    if info.get("bound") and info.get("sessionId") == rec.id:
                        self._track(
                            Live(rec, handle, running=info["turnRunning"], node_id=info["nodeId"])
                        )
                        continue
                    ray.kill(handle)
                fixes.append(await self._as_cold(rec))
        await self._kill_orphans()
        if fixes:
            await self.writer.submit(WriteBatch(sessions=fixes))

    async def _all_sessions(self, status: str) -> list[SessionRecord]:
        assert self.store is not None
        out, offset = [], 0
        while True:
            page = await self.store.list_sessions(status=status, limit=500, offset=offset)
            out.extend(page)
            if len(page) < 500:
                return out
            offset += 500

    async def _as_cold(self, rec: SessionRecord) -> SessionRecord:
        """A session whose worker is gone: paused, or error when it died mid-turn."""
        assert self.store is not None
        last = await self.store.list_events(rec.id, after=max(0, rec.last_seq - 1))
        mid_turn = bool(last) and last[-1].type != "done"
        return rec.model_copy(update={"status": "error" if mid_turn else "paused"})

    async def _alive(self, sandbox_id: str) -> Any | None:
        try:
            handle = ray.get_actor(actor_name(sandbox_id), namespace=self.settings.namespace)
            await asyncio.wait_for(handle.ready.remote(), 10)
            return handle
        except (ValueError, TimeoutError, ray.exceptions.RayError):
            return None

    async def _kill_orphans(self) -> None:
        """Unbound workers left by an earlier registry (its warm pool) hold slots: free them."""
        try:
            from ray.util.state import list_actors

            actors = list_actors(
                filters=[("state", "=", "ALIVE"), ("ray_namespace", "=", self.settings.namespace)],
                limit=10_000,
                raise_on_missing_output=False,
            )
        except Exception:
            logger.info("state API unavailable; orphan workers not collected")
            return
        known = {live.record.sandbox_id for live in self.live.values()}
        for actor in actors:
            name = actor.name or ""
            if name.startswith("ash-session-") and name.removeprefix("ash-session-") not in known:
                with contextlib.suppress(ValueError):
                    ray.kill(ray.get_actor(name, namespace=self.settings.namespace))

    # ------------------------------------------------------------------ agents

    async def deploy_agent(self, name: str, path: str) -> dict[str, Any]:
        store = await self._ready()
        folder = await asyncio.to_thread(_check_agent_folder, path)
        agent = await store.upsert_agent(name, folder)
        self._agents[name] = (time.monotonic(), agent)
        return agent.public()

    async def _agent(self, name: str) -> AgentRecord:
        cached = self._agents.get(name)
        if cached is not None and time.monotonic() - cached[0] < AGENT_CACHE_S:
            return cached[1]
        store = await self._ready()
        agent = await store.get_agent(name)
        if agent is None:
            self._agents.pop(name, None)
            raise AgentNotFound(f"agent {name!r} is not deployed", agent=name)
        self._agents[name] = (time.monotonic(), agent)
        return agent

    async def get_agent(self, name: str) -> dict[str, Any]:
        return (await self._agent(name)).public()

    async def list_agents(self) -> list[dict[str, Any]]:
        store = await self._ready()
        return [a.public() for a in await store.list_agents()]

    async def delete_agent(self, name: str) -> dict[str, Any]:
        store = await self._ready()
        agent = await self.get_agent(name)
        self._agents.pop(name, None)
        await store.delete_agent(name)
        return agent

    # ------------------------------------------------------------------ capacity

    def _worker_count(self) -> int:
        return len(self.live) + len(self.pool.idle) + self.pool.warming

    async def _make_room(self) -> None:
        """Free a slot for one more session: evict the LRU idle one, or wait, or 503."""
        deadline = time.monotonic() + self.settings.capacity_wait_s
        self.waiting += 1
        try:
            while True:
                if len(self.live) < self.settings.max_sandboxes and (
                    self.pool.idle or self.placement.has_room(self._worker_count())
                ):
                    return
                if self.pool.idle and len(self.live) < self.settings.max_sandboxes:
                    return
                if await self._evict_one():
                    continue
                if time.monotonic() >= deadline:
                    raise AtCapacity(
                        f"all {len(self.live)} session slots are running turns; retry later",
                    )
                await asyncio.sleep(0.2)
        finally:
            self.waiting -= 1

    async def _evict_one(self) -> bool:
        if self.pool.idle:
            _sid, handle = self.pool.idle.pop(0)
            ray.kill(handle)
            return True
        idle = [lv for lv in self.live.values() if not lv.running and not lv.lock.locked()]
        if not idle:
            return False
        victim = min(idle, key=lambda lv: lv.record.last_active_at)
        logger.info("evicting idle session %s to make room", victim.record.id)
        await self._go_cold(victim, "paused")
        return True

    async def _worker(self, sandbox_id: str | None = None) -> tuple[Worker, bool]:
        await self._make_room()
        pooled = self.pool.take()
        if pooled is not None:
            return pooled, True
        return await self.pool.spawn(sandbox_id), False

    # ------------------------------------------------------------------ sessions

    def _lock(self, session_id: str) -> asyncio.Lock:
        return self.locks.setdefault(session_id, asyncio.Lock())

    async def _record(self, session_id: str) -> SessionRecord:
        if session_id in self.live:
            return self.live[session_id].record
        store = await self._ready()
        rec = await store.get_session(session_id)
        if rec is None:
            raise SessionNotFound(f"session {session_id} does not exist", session_id=session_id)
        return rec

    async def create_session(self, body: dict[str, Any]) -> dict[str, Any]:
        await self._ready()
        self._check_accepting()
        started = time.perf_counter()
        agent = await self._agent(body["agent"])
        config = SessionConfig(
            **{k: v for k, v in body.items() if k in SessionConfig.model_fields and v is not None}
        )
        (sid, handle), hit = await self._worker()
        now = utcnow()
        rec = SessionRecord(
            id=sid, agent_name=agent.name, sandbox_id=sid, status="active",
            created_at=now, last_active_at=now, config=config,
        )
        await self._bind(rec, handle, agent.path, [], None)
        self.stats.created.labels(pool="hit" if hit else "miss").inc()
        self.stats.pre_warm_hits += int(hit)
        self.stats.create_ms.observe((time.perf_counter() - started) * 1000)
        return rec.public()

    async def _bind(
        self,
        rec: SessionRecord,
        handle: Any,
        agent_path: str,
        conversation: list[dict],
        snapshot: bytes | None,
        extra: WriteBatch | None = None,
    ) -> None:
        """Commit the session row; the worker binds meanwhile, unwaited.

        The worker holds every call for the session until its bind has run, so the caller
        can answer as soon as the row is committed. A bind that fails leaves the session
        in ``error``; the next attach resumes it cold on another worker.
        """
        assert self.writer is not None
        live = Live(rec, handle)
        self._track(live)
        self._background(self._finish_bind(live, agent_path, conversation, snapshot))
        batch = extra or WriteBatch()
        batch.sessions.append(rec)
        await self.writer.submit(batch)

    async def _finish_bind(
        self, live: Live, agent_path: str, conversation: list[dict], snapshot: bytes | None
    ) -> None:
        rec = live.record
        try:
            info = await live.handle.bind.remote(rec, agent_path, conversation, snapshot)
        except Exception:
            logger.exception("binding session %s to its worker failed", rec.id)
            ray.kill(live.handle)
            if self.live.get(rec.id) is live:
                self.live.pop(rec.id)
            assert self.writer is not None
            await self.writer.submit(
                WriteBatch(sessions=[live.record.model_copy(update={"status": "error"})])
            )
            return
        live.node_id = info["nodeId"]

    def _track(self, live: Live) -> None:
        """Index a live session and watch its worker: a death is known without a probe."""
        self.live[live.record.id] = live

        async def watch() -> None:
            with contextlib.suppress(ray.exceptions.RayError):
                await live.handle.watch.remote()
            live.dead = True

        self._background(watch())

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` unawaited, holding a reference until it ends."""
        task = asyncio.create_task(work)
        self._background_tasks.add(task)
        task.add_done_callback(self._background_tasks.discard)

    async def get_session(self, session_id: str) -> dict[str, Any]:
        return (await self._record(session_id)).public()

    async def list_sessions(
        self, agent: str | None, status: str | None, limit: int, offset: int
    ) -> list[dict[str, Any]]:
        store = await self._ready()
        assert self.writer is not None
        await self.writer.flush()
        rows = await store.list_sessions(agent=agent, status=status, limit=limit, offset=offset)
        return [(self.live[r.id].record if r.id in self.live else r).public() for r in rows]

    async def attach(self, session_id: str) -> tuple[dict[str, Any], Any]:
        """The live worker of a session, resuming it first when it is cold or paused."""
        live = self.live.get(session_id)
        if live is not None and live.record.status == "active" and not live.dead:
            return live.record.public(), live.handle
        public = await self.resume(session_id, auto=True)
        return public, self.live[session_id].handle

    async def live_handle(self, session_id: str) -> Any | None:
        """The worker of a session if it has one now (no resume); 404 for unknown ids."""
        await self._record(session_id)
        live = self.live.get(session_id)
        return live.handle if live is not None else None

    async def resume(self, session_id: str, auto: bool = False) -> dict[str, Any]:
        store = await self._ready()
        self._check_accepting()
        lock = self._lock(session_id)
        if lock.locked() and not auto:
            raise Conflict(f"session {session_id} is changing state; retry", session_id=session_id)
        async with lock:
            started = time.perf_counter()
            rec = await self._record(session_id)
            if rec.status == "ended":
                raise SessionEnded(f"session {session_id} has ended", session_id=session_id)
            live = self.live.get(session_id)
            if live is not None and self._flip_active(live):
                self.stats.count_resume("warm", None, (time.perf_counter() - started) * 1000)
                return live.record.public()
            agent = await self._agent(rec.agent_name)
            await self._flush()
            history = [m.api() for m in await store.list_messages(session_id)]
            snapshot = await store.get_snapshot(session_id)
            (sid, handle), _hit = await self._worker(sandbox_id=None)
            rec = rec.model_copy(
                update={"status": "active", "sandbox_id": sid, "last_active_at": utcnow()}
            )
            await self._bind(rec, handle, agent.path, history, snapshot)
            source = "store" if snapshot is not None else "fresh"
            self.stats.count_resume("cold", source, (time.perf_counter() - started) * 1000)
            return rec.public()

    def _flip_active(self, live: Live) -> bool:
        """Warm resume, a state flip here; False when the worker is gone.

        The worker hears of it without being waited for: its record follows
        ``pending_status`` until its own flush carries the new status.
        """
        if live.dead:
            self.live.pop(live.record.id, None)
            return False
        if live.record.status != "active":
            live.record = live.record.model_copy(
                update={"status": "active", "last_active_at": utcnow()}
            )
            live.pending_status = "active"
            live.handle.set_status.remote("active", False)
        return True

    async def _usable(self, live: Live) -> bool:
        try:
            await asyncio.wait_for(live.handle.ready.remote(), 10)
            return True
        except (TimeoutError, ray.exceptions.RayError):
            self.live.pop(live.record.id, None)
            return False

    async def pause(self, session_id: str) -> dict[str, Any]:
        async with self._exclusive(session_id):
            rec = await self._record(session_id)
            self._require(rec, ("active",), "pause")
            live = self.live.get(session_id)
            if live is None:
                return await self._set_cold_status(rec, "paused")
            live.pending_status = None
            public = await live.handle.set_status.remote("paused", True)
            live.record = live.record.model_copy(update={"status": "paused"})
            data = await live.handle.snapshot.remote()
            if data is not None:
                await self.put_snapshot(session_id, data)
            return public

    async def stop(self, session_id: str) -> dict[str, Any]:
        async with self._exclusive(session_id):
            rec = await self._record(session_id)
            self._require(rec, ("active", "paused", "error", "starting"), "stop")
            live = self.live.get(session_id)
            if live is None:
                return await self._set_cold_status(rec, "stopped")
            return await self._go_cold(live, "stopped")

    async def end(self, session_id: str) -> dict[str, Any]:
        async with self._exclusive(session_id):
            rec = await self._record(session_id)
            if rec.status == "ended":
                raise SessionEnded(f"session {session_id} has already ended")
            live = self.live.get(session_id)
            if live is not None:
                return await self._go_cold(live, "ended")
            store = await self._ready()
            await store.delete_snapshot(session_id)
            return await self._set_cold_status(rec, "ended")

    async def fork(self, session_id: str) -> dict[str, Any]:
        store = await self._ready()
        self._check_accepting()
        async with self._exclusive(session_id):
            parent = await self._record(session_id)
            if parent.status == "ended":
                raise SessionEnded(f"session {session_id} has ended; it cannot be forked")
            live = self.live.get(session_id)
            snapshot: bytes | None
            if live is not None:
                if live.running:
                    raise SessionBusy(f"session {session_id} is running a turn; fork after it")
                snapshot = await live.handle.snapshot.remote(True)
            else:
                snapshot = await store.get_snapshot(session_id)
            await self._flush()
            messages = await store.list_messages(session_id)
            agent = await self._agent(parent.agent_name)
            (sid, handle), _hit = await self._worker()
            now = utcnow()
            child = SessionRecord(
                id=sid, agent_name=parent.agent_name, sandbox_id=sid, status="active",
                created_at=now, last_active_at=now, parent_session_id=parent.id,
                config=parent.config,
            )
            copies = [
                MessageRecord(
                    id=new_id(), session_id=sid, sequence=m.sequence, role=m.role,
                    content=m.content, created_at=now,
                )
                for m in messages
            ]
            await self._bind(
                child, handle, agent.path, [m.api() for m in messages], snapshot,
                extra=WriteBatch(messages=copies),
            )
            if snapshot is not None:
                await store.put_snapshot(sid, snapshot)
            return child.public()

    async def patch_config(self, session_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        async with self._exclusive(session_id):
            rec = await self._record(session_id)
            if rec.status == "ended":
                raise SessionEnded(f"session {session_id} has ended")
            live = self.live.get(session_id)
            if live is not None:
                public = await live.handle.update_config.remote(patch)
                live.record = live.record.model_copy(
                    update={"config": live.record.config.model_copy(update=patch)}
                )
                return public
            new = rec.model_copy(update={"config": rec.config.model_copy(update=patch)})
            assert self.writer is not None
            await self.writer.submit(WriteBatch(sessions=[new]))
            return new.public()

    @contextlib.asynccontextmanager
    async def _exclusive(self, session_id: str):  # type: ignore[no-untyped-def]
        await self._ready()
        lock = self._lock(session_id)
        if lock.locked():
            raise Conflict(
                f"session {session_id} is changing state in another call; retry",
                session_id=session_id,
            )
        async with lock:
            yield

    def _require(self, rec: SessionRecord, allowed: tuple[str, ...], verb: str) -> None:
        if rec.status == "ended":
            raise SessionEnded(f"session {rec.id} has ended", session_id=rec.id)
        if rec.status not in allowed:
            raise Conflict(
                f"cannot {verb} session {rec.id}: it is {rec.status}", session_id=rec.id
            )

    def _check_accepting(self) -> None:
        if not self.accepting:
            raise Unavailable("ash-ray is shutting down; retry on another instance")

    async def _set_cold_status(self, rec: SessionRecord, status: str) -> dict[str, Any]:
        assert self.writer is not None
        new = rec.model_copy(update={"status": status, "last_active_at": utcnow()})
        await self.writer.submit(WriteBatch(sessions=[new]))
        return new.public()

    async def _go_cold(self, live: Live, status: str) -> dict[str, Any]:
        """Save and snapshot a session, then release its worker."""
        live.pending_status = None  # the worker's release sets the status now
        try:
            public = await live.handle.release.remote(status)
        except ray.exceptions.RayError:
            public = (await self._set_cold_status(live.record, status))
        self.live.pop(live.record.id, None)
        ray.kill(live.handle)
        if status == "ended":
            store = await self._ready()
            await store.delete_snapshot(live.record.id)
        return public

    # ------------------------------------------------------------------ from workers

    async def record(self, batch: WriteBatch, stats: dict[str, Any]) -> None:
        """Persist what a worker produced; returns once it is committed."""
        await self._ready()
        assert self.writer is not None
        for i, rec in enumerate(batch.sessions):
            live = self.live.get(rec.id)
            if live is not None:
                if live.pending_status is not None:
                    if rec.status == live.pending_status:
                        live.pending_status = None
                    else:  # a flush sent before the worker heard of the new status
                        rec = rec.model_copy(update={"status": live.pending_status})
                        batch.sessions[i] = rec
                live.record = rec
                if "running" in stats:
                    live.running = bool(stats["running"])
        if stats:
            self.stats.observe_turn(stats)
        self.stats.events.inc(len(batch.events))
        await self.writer.submit(batch)

    async def put_snapshot(self, session_id: str, data: bytes) -> None:
        store = await self._ready()
        await store.put_snapshot(session_id, data)

    async def worker_failed(self, session_id: str, seen_seq: int) -> list[tuple]:
        """An ingress saw the worker die: mark the session, close the turn in the log."""
        store = await self._ready()
        live = self.live.get(session_id)
        if live is not None and await self._usable(live):
            return []
        rec = await store.get_session(session_id)
        if rec is None:
            return []
        seq = max(rec.last_seq, seen_seq)
        now = utcnow()
        events = [
            EventRecord(session_id=session_id, seq=seq + 1, type="error",
                        data={"error": "the session worker died; resume to continue"},
                        created_at=now),
            EventRecord(session_id=session_id, seq=seq + 2, type="done",
                        data={"sessionId": session_id}, created_at=now),
        ]
        status = rec.status if rec.status == "ended" else "error"
        new = rec.model_copy(update={"status": status, "last_seq": seq + 2})
        assert self.writer is not None
        await self.writer.submit(WriteBatch(sessions=[new], events=events))
        return [(e.seq, e.type, e.data) for e in events]

    # ------------------------------------------------------------------ reads

    async def list_messages(self, session_id: str, after: int, limit: int) -> list[dict]:
        store = await self._ready()
        await self._record(session_id)
        await self._flush()
        return [m.public() for m in await store.list_messages(session_id, after=after, limit=limit)]

    async def list_events(self, session_id: str, after: int, limit: int | None) -> list[tuple]:
        store = await self._ready()
        await self._record(session_id)
        await self._flush()
        rows = await store.list_events(session_id, after=after, limit=limit)
        return [(e.seq, e.type, e.data, e.created_at.isoformat()) for e in rows]

    async def _flush(self) -> None:
        assert self.writer is not None
        await self.writer.flush()

    def _pool_figures(self) -> dict[str, int]:
        running = sum(1 for lv in self.live.values() if lv.running)
        return {
            "total": len(self.live) + len(self.pool.idle) + self.pool.warming,
            "cold": 0,
            "warming": self.pool.warming,
            "warm": len(self.pool.idle) + len(self.live) - running,
            "waiting": self.waiting,
            "running": running,
            "maxCapacity": self.settings.max_sandboxes,
            "resumeWarmHits": self.stats.warm_hits,
            "resumeColdHits": self.stats.cold_hits,
            "preWarmHits": self.stats.pre_warm_hits,
        }

    async def health(self) -> dict[str, Any]:
        store = await self._ready()
        pool = self._pool_figures()
        return {
            "activeSessions": sum(1 for lv in self.live.values() if lv.record.status == "active"),
            "activeSandboxes": len(self.live),
            "pool": pool,
            "poolReady": len(self.pool.idle),
            "store": store.kind,
            "accepting": self.accepting,
            "registryUptime": round(time.time() - self.started_at, 3),
            "sessionSlots": self.placement.slots_total,
        }

    async def metrics_text(self) -> bytes:
        h = await self.health()
        s = self.stats
        s.active_sessions.set(h["activeSessions"])
        s.active_sandboxes.set(h["activeSandboxes"])
        pool = h["pool"]
        for state in ("warming", "warm", "running", "waiting"):
            s.pool_sandboxes.labels(state=state).set(pool[state])
        return s.text()

    async def describe_all(self) -> list[dict[str, Any]]:
        """Every live worker's own view (for `ash-ray ps`)."""
        async def one(lv: Live) -> dict[str, Any]:
            try:
                return await asyncio.wait_for(lv.handle.describe.remote(), 5)
            except (TimeoutError, ray.exceptions.RayError) as exc:
                return {"sessionId": lv.record.id, "error": type(exc).__name__}

        return list(await asyncio.gather(*(one(lv) for lv in list(self.live.values()))))

    # ------------------------------------------------------------------ background

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval_s)
            try:
                await self.sweep()
            except Exception:
                logger.exception("idle sweep failed")

    async def sweep(self, idle_timeout_s: float | None = None) -> int:
        """Idle sessions go cold; dead workers are noticed; old cold workspaces removed."""
        await self._ready()
        now = utcnow()
        limit = self.settings.idle_timeout_ms / 1000 if idle_timeout_s is None else idle_timeout_s
        swept = 0
        for live in list(self.live.values()):
            if not await self._usable(live):
                assert self.writer is not None
                cold = await self._as_cold(live.record)
                await self.writer.submit(WriteBatch(sessions=[cold]))
                continue
            idle = (now - live.record.last_active_at).total_seconds()
            if live.running or live.lock.locked() or idle < limit:
                continue
            async with live.lock:
                await self._go_cold(live, "paused")
                swept += 1
        self._remove_stale_workspaces()
        self.pool.refill_soon()
        return swept

    def _remove_stale_workspaces(self) -> None:
        root = self.settings.workspaces_dir
        if not root.is_dir():
            return
        cutoff = time.time() - self.settings.cold_ttl_s
        for ws in root.iterdir():
            if ws.name not in self.live and ws.stat().st_mtime < cutoff:
                shutil.rmtree(ws, ignore_errors=True)

    async def drain(
        self, timeout_s: float | None = None, node_id: str | None = None
    ) -> dict[str, Any]:
        """Graceful shutdown: pause and snapshot every live session (of one node, if given).

        Draining the whole cluster also refuses new work until the registry restarts.
        """
        await self._ready()
        if node_id is None:
            self.accepting = False
        timeout = self.settings.drain_timeout_s if timeout_s is None else timeout_s
        lives = [lv for lv in self.live.values() if node_id in (None, lv.node_id)]
        results = await asyncio.wait_for(
            asyncio.gather(*(self._go_cold(lv, "paused") for lv in lives), return_exceptions=True),
            timeout,
        )
        if node_id is None:
            self.pool.drain()
        await self._flush()
        failed = [str(r) for r in results if isinstance(r, BaseException)]
        return {"paused": len(lives) - len(failed), "failed": failed}


def _check_agent_folder(path: str) -> str:
    folder = Path(path).expanduser()
    if not folder.is_absolute():
        raise AgentInvalid(f"agent path must be absolute, got {path!r}", path=path)
    if not (folder / "CLAUDE.md").is_file():
        raise AgentInvalid(
            f"{folder} has no CLAUDE.md; an agent folder needs one (its system prompt)",
            path=path,
        )
    load_agent(folder)  # settings.json and skills must parse, too
    return str(folder)
