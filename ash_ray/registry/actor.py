"""The registry: a detached named actor that owns agents, the session index and lifecycle.

It is the only creator and killer of session workers, enforces capacity, keeps the warm
pool, sweeps idle sessions, and writes everything behind to the Store. On (re)start it
loads its state from the Store, so a restart loses nothing the Store has.

This class is a thin shell: each remote method waits for the start, then delegates to one
plain asyncio service (see the package's modules). Its callers use
:class:`ash_ray.handles.RegistryClient`, whose :class:`~ash_ray.handles.RegistryApi` this
class satisfies (checked by mypy below).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ray.actor import ActorHandle

from ash_ray.actor_api import AGENT_OPS
from ash_ray.config import Settings
from ash_ray.errors import InvalidInput
from ash_ray.handles import Attached, DrainResult, Event, RegistryApi
from ash_ray.models import (
    DEFAULT_TENANT,
    AgentRecord,
    EventRecord,
    MessageRecord,
    QueuedTurn,
    SessionRecord,
    WriteBatch,
)
from ash_ray.names import REGISTRY_NAME
from ash_ray.priority import favour_control_plane
from ash_ray.registry.agent_versions import AgentVersions
from ash_ray.registry.agents import Agents
from ash_ray.registry.capacity import Capacity
from ash_ray.registry.files import RegistryFiles
from ash_ray.registry.jobs_watch import JobsWatch, StartJobs
from ash_ray.registry.lifecycle import Lifecycle
from ash_ray.registry.rayops import RayOps
from ash_ray.registry.recovery import Recovery
from ash_ray.registry.state import Core
from ash_ray.registry.stats import RegistryStats
from ash_ray.registry.upkeep import Upkeep
from ash_ray.store.base import Store
from ash_ray.tenants import ApiKeyRecord, CredentialRecord

logger = logging.getLogger(__name__)

__all__ = ["REGISTRY_NAME", "Registry", "Services"]


@dataclass
class Services:
    """The registry's services, built once the store is open."""

    core: Core
    agents: Agents
    capacity: Capacity
    lifecycle: Lifecycle
    recovery: Recovery
    upkeep: Upkeep
    versions: AgentVersions

    @classmethod
    def build(
        cls, settings: Settings, store: Store, ray_ops: RayOps, stats: RegistryStats,
        start_jobs: StartJobs | None = None,
    ) -> Services:
        core = Core(settings, store, ray_ops, stats)
        agents = Agents(store, settings)
        capacity = Capacity(core)
        recovery = Recovery(core)
        lifecycle = Lifecycle(core, agents, capacity)
        recovery.resume = lifecycle.resume
        jobs = JobsWatch(settings, store, start_jobs)
        return cls(
            core, agents, capacity, lifecycle, recovery,
            Upkeep(core, capacity, recovery, jobs), AgentVersions(agents),
        )

    async def start(self) -> None:
        self.core.start()
        await self.capacity.placement.refresh()
        await self.recovery.recover()
        self.core.background(self.upkeep.jobs_check())  # work a crash left: at once
        self.core.background(self.upkeep.sweep_forever())
        self.capacity.pool.refill_soon()

    async def close(self) -> None:
        await self.core.close()
        await self.core.store.close()


class Registry(RegistryFiles):
    """See the module docstring. Methods are called with ``.remote()``; all are async."""

    def __init__(
        self,
        settings: Settings,
        worker_cls: type,
        store_factory: Callable[[Settings], Store],
        start_jobs: StartJobs | None = None,
    ) -> None:
        favour_control_plane("registry")
        self.settings = settings
        self.store_factory = store_factory
        self.start_jobs = start_jobs  # the jobs actor, started when the Store holds work
        self.ray_ops = RayOps(settings, worker_cls)
        self.started_at = time.time()
        self.stats = RegistryStats()
        self._init: asyncio.Task[Services] | None = None

    async def _ready(self) -> Services:
        if self._init is None:
            self._init = asyncio.create_task(self._start())
        return await asyncio.shield(self._init)

    async def _start(self) -> Services:
        await asyncio.to_thread(self.settings.data_dir.mkdir, parents=True, exist_ok=True)
        store = self.store_factory(self.settings)
        await store.open()
        svc = Services.build(self.settings, store, self.ray_ops, self.stats, self.start_jobs)
        await svc.start()
        await svc.capacity.placement.refresh()
        self.stats.max_capacity.set(svc.capacity.limit)
        logger.info(
            "registry ready: store=%s live=%d slots=%s", store.kind, len(svc.core.live),
            svc.capacity.placement.slots_total or "undeclared",
        )
        return svc

    async def ping(self) -> dict[str, Any]:
        svc = await self._ready()
        return {"ok": True, "live": len(svc.core.live), "pid": os.getpid()}

    # ------------------------------------------------------------------ agents

    async def deploy_agent(
        self, name: str, path: str, tenant: str = DEFAULT_TENANT
    ) -> AgentRecord:
        return await (await self._ready()).agents.deploy(name, path, tenant=tenant)

    async def get_agent(self, name: str, tenant: str = DEFAULT_TENANT) -> AgentRecord:
        return await (await self._ready()).agents.get(name, tenant)

    async def list_agents(self, tenant: str = DEFAULT_TENANT) -> list[AgentRecord]:
        return await (await self._ready()).agents.list(tenant)

    async def delete_agent(self, name: str, tenant: str = DEFAULT_TENANT) -> AgentRecord:
        return await (await self._ready()).agents.delete(name, tenant)

    async def agent_op(self, op: str, *args: Any, **kwargs: Any) -> Any:
        """One of the agent services' operations, by name (see handles.AGENT_OPS)."""
        svc = await self._ready()
        service, _, method = op.partition(".")
        if op not in AGENT_OPS:
            raise InvalidInput(f"unknown agent operation {op!r}")
        target = svc.agents if service == "agents" else svc.versions
        return await getattr(target, method)(*args, **kwargs)

    # ------------------------------------------------------------------ sessions

    async def create_session(
        self, body: dict[str, Any], tenant: str = DEFAULT_TENANT
    ) -> SessionRecord:
        return await (await self._ready()).lifecycle.create(body, tenant)

    async def get_session(self, session_id: str) -> SessionRecord:
        return await (await self._ready()).core.record_of(session_id)

    async def list_sessions(
        self, agent: str | None, status: str | None, limit: int, offset: int,
        tenant: str | None = DEFAULT_TENANT,
    ) -> list[SessionRecord]:
        core = (await self._ready()).core
        await core.flush()
        rows = await core.store.list_sessions(
            agent=agent, status=status, limit=limit, offset=offset, tenant=tenant
        )
        return [core.live[r.id].record if r.id in core.live else r for r in rows]

    # ------------------------------------------------------------------ keys, credentials
    # Thin: the ingress hashes keys and seals credentials (it holds the settings), and
    # only the session worker opens a credential; the registry stores what it is given.

    async def add_api_key(self, rec: ApiKeyRecord) -> None:
        await (await self._ready()).core.store.add_api_key(rec)

    async def find_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        return await (await self._ready()).core.store.find_api_key(key_hash)

    async def list_api_keys(self, tenant: str) -> list[ApiKeyRecord]:
        return await (await self._ready()).core.store.list_api_keys(tenant)

    async def delete_api_key(self, key_id: str, tenant: str) -> bool:
        return await (await self._ready()).core.store.delete_api_key(key_id, tenant)

    async def add_credential(self, rec: CredentialRecord) -> None:
        await (await self._ready()).core.store.add_credential(rec)

    async def list_credentials(self, tenant: str) -> list[CredentialRecord]:
        return await (await self._ready()).core.store.list_credentials(tenant)

    async def delete_credential(self, credential_id: str, tenant: str) -> bool:
        return await (await self._ready()).core.store.delete_credential(credential_id, tenant)

    async def attach(self, session_id: str) -> Attached:
        live = await (await self._ready()).lifecycle.attach(session_id)
        return Attached(live.record, live.worker.handle)

    async def live_handle(self, session_id: str) -> ActorHandle | None:
        """The worker of a session if it has one now (no resume); 404 for unknown ids."""
        core = (await self._ready()).core
        await core.record_of(session_id)
        live = core.live.get(session_id)
        return live.worker.handle if live is not None else None

    async def resume(self, session_id: str, auto: bool = False) -> SessionRecord:
        return await (await self._ready()).lifecycle.resume(session_id, auto)

    async def pause(self, session_id: str) -> SessionRecord:
        return await (await self._ready()).lifecycle.pause(session_id)

    async def stop(self, session_id: str) -> SessionRecord:
        return await (await self._ready()).lifecycle.stop(session_id)

    async def end(self, session_id: str) -> SessionRecord:
        return await (await self._ready()).lifecycle.end(session_id)

    async def fork(self, session_id: str) -> SessionRecord:
        return await (await self._ready()).lifecycle.fork(session_id)

    async def patch_config(self, session_id: str, patch: dict[str, Any]) -> SessionRecord:
        return await (await self._ready()).lifecycle.patch_config(session_id, patch)

    # ------------------------------------------------------------------ from workers

    async def record(self, batch: WriteBatch, stats: dict[str, Any]) -> None:
        """Persist what a worker produced; returns once it is committed."""
        core = (await self._ready()).core
        if stats:
            self.stats.observe_turn(stats)
        self.stats.events.inc(len(batch.events))
        self.stats.batches.inc()
        await core.record(batch, stats)

    async def put_snapshot(self, session_id: str, data: bytes) -> None:
        await (await self._ready()).core.store.put_snapshot(session_id, data)

    async def put_turn(self, item: QueuedTurn) -> None:
        """Queue (or mark running) a session's message; returns once committed."""
        await (await self._ready()).core.put_turn(item)

    async def delete_turn(self, session_id: str, message_id: str) -> None:
        await (await self._ready()).core.store.delete_turn(session_id, message_id)

    async def list_turns(self, session_id: str) -> list[QueuedTurn]:
        return await (await self._ready()).core.store.list_turns(session_id)

    async def worker_failed(self, session_id: str, seen_seq: int) -> list[Event]:
        """An ingress saw the worker die: pause the session, close the turn in the log."""
        return await (await self._ready()).recovery.worker_failed(session_id, seen_seq)

    # ------------------------------------------------------------------ reads

    async def list_messages(self, session_id: str, after: int, limit: int) -> list[MessageRecord]:
        core = (await self._ready()).core
        await core.record_of(session_id)
        await core.flush()
        return await core.store.list_messages(session_id, after=after, limit=limit)

    async def list_events(
        self, session_id: str, after: int, limit: int | None
    ) -> list[EventRecord]:
        core = (await self._ready()).core
        await core.record_of(session_id)
        await core.flush()
        return await core.store.list_events(session_id, after=after, limit=limit)

    async def health(self) -> dict[str, Any]:
        svc = await self._ready()
        live = svc.core.live
        return {
            "activeSessions": sum(1 for lv in live.values() if lv.record.status == "active"),
            "activeSandboxes": len(live),
            "pool": svc.capacity.figures(),
            "poolReady": len(svc.capacity.pool.idle),
            "store": svc.core.store.kind,
            "accepting": svc.core.accepting,
            "registryUptime": round(time.time() - self.started_at, 3),
            "sessionSlots": svc.capacity.placement.slots_total,
            "sessionsPerNode": dict(Counter(lv.node_id or "binding" for lv in live.values())),
        }

    async def metrics_text(self) -> bytes:
        h = await self.health()
        s = self.stats
        s.active_sessions.set(h["activeSessions"])
        s.active_sandboxes.set(h["activeSandboxes"])
        for state in ("warming", "warm", "running", "waiting"):
            s.pool_sandboxes.labels(state=state).set(h["pool"][state])
        return s.text()

    async def describe_all(self) -> list[dict[str, Any]]:
        """Every live worker's own view (for `ash-ray ps`)."""
        return await (await self._ready()).upkeep.describe_all()

    # ------------------------------------------------------------------ operations

    async def sweep(self, idle_timeout_s: float | None = None) -> int:
        return await (await self._ready()).upkeep.sweep(idle_timeout_s)

    async def drain(
        self, timeout_s: float | None = None, node_id: str | None = None
    ) -> DrainResult:
        return await (await self._ready()).upkeep.drain(timeout_s, node_id)


def _conforms(registry: Registry) -> RegistryApi:
    return registry  # mypy: the shell has every method RegistryClient calls, typed alike
