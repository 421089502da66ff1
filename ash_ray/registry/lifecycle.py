"""The session state machine: create, resume (warm or cold), pause, stop, end, fork, config.

Only this service binds workers to sessions; :class:`~ash_ray.registry.capacity.Capacity`
hands it the workers and :meth:`Core.release` takes them back.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ash_ray.errors import Conflict, CredentialInvalid, SessionBusy, SessionEnded, Unavailable
from ash_ray.handles import WorkerClient
from ash_ray.lifecycle_events import cold_event, entry
from ash_ray.models import (
    DEFAULT_TENANT,
    AgentRef,
    MessageRecord,
    SessionConfig,
    SessionRecord,
    WriteBatch,
    new_id,
    utcnow,
)
from ash_ray.registry.agents import Agents
from ash_ray.registry.capacity import Capacity
from ash_ray.registry.state import Core, Live
from ash_ray.store._rows import tenant_name
from ash_ray.tenants import CredentialRecord

logger = logging.getLogger(__name__)

# A warm resume's timeline entry: the live worker (its sandbox) carries on.
WARM_RESUME = entry("resumed", path="warm", source="sandbox")
# Resumes an attach tries when the session is gone again before the caller has it.
ATTACH_TRIES = 3


class Lifecycle:
    def __init__(self, core: Core, agents: Agents, capacity: Capacity) -> None:
        self.core = core
        self.agents = agents
        self.capacity = capacity

    # ------------------------------------------------------------------ create and bind

    async def create(self, body: dict[str, Any], tenant: str = DEFAULT_TENANT) -> SessionRecord:
        self.core.check_accepting()
        started = time.perf_counter()
        agent = await self.agents.get(body["agent"], tenant)
        ref = await self.agents.ref(agent.name, tenant=tenant)
        config = SessionConfig(
            **{k: v for k, v in body.items() if k in SessionConfig.model_fields and v is not None}
        )
        # The system prompt: the request's, else the agent's active version's, else the
        # CLAUDE.md of the archive (the loop's default when config has none).
        prompt = config.system_prompt
        if prompt is None:
            active = await self.agents.store.active_agent_version(
                tenant_name(tenant, agent.name)
            )
            prompt = active.system_prompt if active is not None else None
        config = config.model_copy(update={"agent_version": ref.version, "system_prompt": prompt})
        await self.agents.check_config(agent, config)
        now = utcnow()
        rec = SessionRecord(
            id="", agent_name=agent.name, tenant_id=tenant, sandbox_id="", status="active",
            created_at=now, last_active_at=now, config=config,
        )
        credential = await self._credential(rec)
        (sid, worker), hit = await self.capacity.worker()
        rec, created = cold_event(
            rec.model_copy(update={"id": self._new_session_id(sid), "sandbox_id": sid}),
            "created", agentName=agent.name, model=config.model,
        )
        await self._bind(
            rec, worker, ref, [], None, extra=WriteBatch(events=[created]), started=hit,
            credential=credential,
        )
        stats = self.core.stats
        stats.created.labels(pool="hit" if hit else "miss").inc()
        stats.pre_warm_hits += int(hit)
        stats.create_ms.observe((time.perf_counter() - started) * 1000)
        return rec

    async def _bind(
        self,
        rec: SessionRecord,
        worker: WorkerClient,
        agent: AgentRef,
        conversation: list[dict[str, Any]],
        snapshot: bytes | None,
        extra: WriteBatch | None = None,
        started: bool = True,
        credential: CredentialRecord | None = None,
    ) -> None:
        """Commit the session row; the worker starts (unless ``started``) and binds
        meanwhile, unwaited.

        The worker holds every call for the session until its bind has run (Ray queues
        them while its process starts), so the caller can answer as soon as the row is
        committed. A worker that does not start or bind leaves the session in ``error``;
        the next attach resumes it cold on another worker.
        """
        live = Live(rec, worker.scoped(rec.id))
        self.core.track(live)
        self.core.background(
            self._finish_bind(live, agent, conversation, snapshot, started, credential)
        )
        await self.core.submit(rec, batch=extra)

    def _new_session_id(self, sandbox_id: str) -> str:
        """A new worker's sandbox id names its first session; a reused one's cannot."""
        return new_id() if self.capacity.pool.reused(sandbox_id) else sandbox_id

    async def _finish_bind(
        self, live: Live, agent: AgentRef, conversation: list[dict[str, Any]],
        snapshot: bytes | None, started: bool = True,
        credential: CredentialRecord | None = None,
    ) -> None:
        rec = live.record
        try:
            if not started:
                await self.capacity.pool.started(live.worker)
            live.node_id = await live.worker.bind(rec, agent, conversation, snapshot, credential)
            # The grace counts from here: until now the session was not evictable anyway,
            # and its first message (held by the worker until this bind) starts just now.
            live.fresh_until = time.monotonic() + self.core.settings.evict_grace_s
        except Exception:
            await self.capacity.pool.kill(rec.sandbox_id, live.worker)
            if self.core.live.get(rec.id) is not live:
                return  # released (stopped, ended, evicted) before it was bound
            logger.exception("binding session %s to its worker failed", rec.id)
            self.core.live.pop(rec.id)
            await self.core.submit(live.record.model_copy(update={"status": "error"}))

    async def _credential(self, rec: SessionRecord) -> CredentialRecord | None:
        """The session's stored credential (sealed; only the worker opens it), if it names one.

        Bumps the credential's ``last_used_at``. Another tenant's id reads as missing.
        """
        cid = rec.config.credential_id
        if cid is None:
            return None
        found = await self.core.store.use_credential(cid, rec.tenant_id)
        if found is None:
            raise CredentialInvalid(
                f"credential {cid} does not exist (deleted?): create the session with a "
                "credential listed by GET /api/credentials",
                credential_id=cid,
            )
        if found.type == "openai":
            raise CredentialInvalid(
                f"credential {cid} is an openai key: stored, but the agent loop speaks the "
                "Anthropic Messages API (use anthropic, bedrock or custom)",
                credential_id=cid,
            )
        return found

    # ------------------------------------------------------------------ attach and resume

    async def attach(self, session_id: str) -> Live:
        """The live session, resuming it first when it is cold or paused (after a release
        under way, whose worker refuses new turns: :class:`WorkerReleasing`).

        Short of slots, a session just resumed may be evicted again (it is idle until the
        caller's message reaches it) or its worker may fail to bind before the caller has
        it: it is resumed once more, a few times, then 503.
        """
        for _attempt in range(ATTACH_TRIES):
            live = self.core.live.get(session_id)
            if live is not None and live.releasing is not None:
                await live.releasing.wait()
                live = self.core.live.get(session_id)  # gone, or kept (an eviction refused)
            if live is not None and live.record.status == "active" and not live.dead:
                return live
            await self.resume(session_id, auto=True)
            if (live := self.core.live.get(session_id)) is not None:
                return live
        raise Unavailable(
            f"session {session_id} lost its worker as soon as it was resumed, "
            f"{ATTACH_TRIES} times: the cluster is short of session slots; retry later",
            session_id=session_id,
        )

    async def resume(self, session_id: str, auto: bool = False) -> SessionRecord:
        self.core.check_accepting()
        async with self.core.locks.hold(session_id, wait=auto):
            started = time.perf_counter()
            rec = await self.core.record_of(session_id)
            if rec.status == "ended":
                raise SessionEnded(f"session {session_id} has ended", session_id=session_id)
            live = self.core.live.get(session_id)
            if live is not None and self._flip_active(live):
                self.core.stats.count_resume("warm", None, (time.perf_counter() - started) * 1000)
                return live.record
            rec, source = await self._resume_cold(rec)
            self.core.stats.count_resume("cold", source, (time.perf_counter() - started) * 1000)
            return rec

    async def _resume_cold(self, rec: SessionRecord) -> tuple[SessionRecord, str]:
        """A new worker with the stored conversation and workspace; and where it came from."""
        store = self.core.store
        agent = await self.agents.ref(rec.agent_name, rec.config.agent_version, rec.tenant_id)
        credential = await self._credential(rec)
        await self.core.flush()
        history = [m.api() for m in await store.list_messages(rec.id)]
        snapshot = await store.get_snapshot(rec.id)
        (sid, worker), hit = await self.capacity.worker(sandbox_id=None)
        source = "store" if snapshot is not None else "fresh"
        rec, resumed = cold_event(
            rec.model_copy(
                update={"status": "active", "sandbox_id": sid, "last_active_at": utcnow()}
            ),
            "resumed", path="cold", source=source,
        )
        await self._bind(
            rec, worker, agent, history, snapshot, extra=WriteBatch(events=[resumed]),
            started=hit, credential=credential,
        )
        return rec, source

    def _flip_active(self, live: Live) -> bool:
        """Warm resume, a state flip here; False when the worker is gone.

        The worker hears of it without being waited for: its record follows
        ``pending_status`` until its own flush carries the new status.
        """
        if live.dead:
            self.core.live.pop(live.record.id, None)
            return False
        if live.record.status != "active":
            live.record = live.record.model_copy(
                update={"status": "active", "last_active_at": utcnow()}
            )
            live.pending_status = "active"
            # Sent now, so that it reaches the worker before any later call of this
            # session; not awaited (a dead worker is the death watch's business).
            live.worker.set_status("active", False, WARM_RESUME).ref()
        return True

    # ------------------------------------------------------------------ state changes

    async def pause(self, session_id: str) -> SessionRecord:
        async with self.core.locks.hold(session_id, wait=False):
            rec = await self.core.record_of(session_id)
            _require(rec, ("active",), "pause")
            live = self.core.live.get(session_id)
            if live is None:
                return await self.core.set_cold_status(rec, "paused")
            live.pending_status = None
            paused = await live.worker.set_status("paused", True, entry("paused"))
            live.record = live.record.model_copy(update={"status": "paused"})
            data = await live.worker.snapshot()
            if data is not None:
                await self.core.store.put_snapshot(session_id, data)
            return paused

    async def stop(self, session_id: str) -> SessionRecord:
        async with self.core.locks.hold(session_id, wait=False):
            rec = await self.core.record_of(session_id)
            _require(rec, ("active", "paused", "error", "starting"), "stop")
            live = self.core.live.get(session_id)
            if live is None:
                return await self.core.set_cold_status(rec, "stopped")
            return await self.core.release(live, "stopped")

    async def end(self, session_id: str) -> SessionRecord:
        async with self.core.locks.hold(session_id, wait=False):
            rec = await self.core.record_of(session_id)
            if rec.status == "ended":
                raise SessionEnded(f"session {session_id} has already ended")
            live = self.core.live.get(session_id)
            if live is not None:
                return await self.core.release(live, "ended")
            return await self.core.set_cold_status(rec, "ended")

    async def fork(self, session_id: str) -> SessionRecord:
        self.core.check_accepting()
        store = self.core.store
        async with self.core.locks.hold(session_id, wait=False):
            parent = await self.core.record_of(session_id)
            if parent.status == "ended":
                raise SessionEnded(f"session {session_id} has ended; it cannot be forked")
            live = self.core.live.get(session_id)
            snapshot: bytes | None
            if live is not None:
                if live.running:
                    raise SessionBusy(f"session {session_id} is running a turn; fork after it")
                snapshot = await live.worker.snapshot(True)
            else:
                snapshot = await store.get_snapshot(session_id)
            await self.core.flush()
            messages = await store.list_messages(session_id)
            events = await store.list_events(session_id)
            agent = await self.agents.ref(
                parent.agent_name, parent.config.agent_version, parent.tenant_id
            )
            credential = await self._credential(parent)
            (sandbox_id, worker), hit = await self.capacity.worker()
            sid = self._new_session_id(sandbox_id)
            now = utcnow()
            child, forked = cold_event(
                SessionRecord(
                    id=sid, agent_name=parent.agent_name, tenant_id=parent.tenant_id,
                    sandbox_id=sandbox_id, status="active", created_at=now,
                    last_active_at=now,
                    parent_session_id=parent.id, config=parent.config,
                    last_seq=events[-1].seq if events else 0,
                ),
                "forked", parentSessionId=parent.id,
            )
            copies = [
                MessageRecord(
                    id=new_id(), session_id=sid, sequence=m.sequence, role=m.role,
                    content=m.content, created_at=now,
                )
                for m in messages
            ]
            await self._bind(
                child, worker, agent, [m.api() for m in messages], snapshot,
                extra=WriteBatch(
                    messages=copies,
                    events=[e.model_copy(update={"session_id": sid}) for e in events]
                    + [forked],
                ),
                started=hit, credential=credential,
            )
            if snapshot is not None:
                await store.put_snapshot(sid, snapshot)
            return child

    async def patch_config(self, session_id: str, patch: dict[str, Any]) -> SessionRecord:
        async with self.core.locks.hold(session_id, wait=False):
            rec = await self.core.record_of(session_id)
            if rec.status == "ended":
                raise SessionEnded(f"session {session_id} has ended")
            if {"initial_agent", "subagents"} & patch.keys():
                agent = await self.agents.get(rec.agent_name, rec.tenant_id)
                await self.agents.check_config(agent, rec.config.model_copy(update=patch))
            live = self.core.live.get(session_id)
            if live is not None:
                patched = await live.worker.update_config(patch)
                live.record = live.record.model_copy(
                    update={"config": live.record.config.model_copy(update=patch)}
                )
                return patched
            new = rec.model_copy(update={"config": rec.config.model_copy(update=patch)})
            await self.core.submit(new)
            return new


def _require(rec: SessionRecord, allowed: tuple[str, ...], verb: str) -> None:
    if rec.status == "ended":
        raise SessionEnded(f"session {rec.id} has ended", session_id=rec.id)
    if rec.status not in allowed:
        raise Conflict(f"cannot {verb} session {rec.id}: it is {rec.status}", session_id=rec.id)
