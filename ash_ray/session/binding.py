"""The bind half of a session worker: take a session, give it back to the pool.

A mixin of :class:`~ash_ray.session.actor.SessionWorker` (kept here so that the actor
module stays the turns' shell). :meth:`WorkerBinding.bind` opens the session's
workspace, sandbox and loop and picks up what an earlier worker left;
:meth:`WorkerBinding.release` saves and snapshots it and closes its sandbox; after it,
:meth:`WorkerBinding.unbind` forgets it so that the worker may serve another session.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
from typing import TYPE_CHECKING, Any

import ray

from ash_ray import priority
from ash_ray.agent.spec import agent_network, load_agent
from ash_ray.config import Settings
from ash_ray.errors import Conflict
from ash_ray.handles import RegistryClient
from ash_ray.lifecycle_events import LIFECYCLE, open_turn_tail, prompt_stored
from ash_ray.lifecycle_events import entry as lifecycle_entry
from ash_ray.models import AgentRef, EventRecord, QueuedTurn, SessionRecord
from ash_ray.sandbox import create_sandbox
from ash_ray.session import agent_cache, workspace
from ash_ray.session.events import EventLog
from ash_ray.session.metrics import SessionMetrics, rss_mb
from ash_ray.session.persist import Persister
from ash_ray.session.state import Bound, bound
from ash_ray.session.worker_files import WorkerFiles
from ash_ray.tenants import CredentialRecord

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic

    from ash_ray.session.turns import TurnRunner

logger = logging.getLogger(__name__)


class WorkerBinding(WorkerFiles):
    """Bind, release and unbind of :class:`~ash_ray.session.actor.SessionWorker`."""

    settings: Settings
    sandbox_id: str
    client: AsyncAnthropic
    server_client: AsyncAnthropic
    registry: RegistryClient
    metrics: SessionMetrics
    turns: TurnRunner | None
    persist: Persister | None

    async def bind(
        self,
        record: SessionRecord,
        agent: AgentRef,
        conversation: list[dict[str, Any]],
        snapshot: bytes | None,
        credential: CredentialRecord | None = None,
    ) -> str:
        """Attach this worker to a session: workspace, sandbox, loop, conversation.

        ``credential`` (sealed) replaces the server's model key for this session.
        Returns the Ray node id the worker runs on.
        """
        current = self.guard.bound
        if current is not None and current.record.id != record.id:
            raise Conflict(f"worker {self.sandbox_id} already serves {current.record.id}")
        self.guard.expect(record.id)
        priority.serving(True)  # the session's first message waits for this bind
        from ash_ray.session.model_client import credential_client
        from ash_ray.session.turns import TurnRunner

        try:
            if credential is not None:
                self.client = credential_client(self.settings, credential, self.server_client)
            session = await self._open(record, agent, conversation, snapshot)
        except Exception as exc:
            self.guard.settle(error=f"{type(exc).__name__}: {exc}")
            raise
        self.persist = Persister(self.registry, session, lambda: self._turn_open())
        self.turns = TurnRunner(
            self.settings, session, self.persist, self.metrics,
            lambda: self._snapshot_to_store(session), self.registry,
        )
        try:
            stored, turn_open, prompt_saved = await self._left_over(record, conversation)
        except Exception as exc:
            self.guard.settle(error=f"{type(exc).__name__}: {exc}")
            raise
        self.persist.start()
        # A turn cut off by a lost worker continues here, or is closed the way an
        # interrupted turn is (saved with the next flush); then the queue runs.
        self.turns.recover(stored, turn_open, prompt_saved)
        self.guard.settle(session)
        return node_id()

    async def _left_over(
        self, record: SessionRecord, conversation: list[dict[str, Any]]
    ) -> tuple[list[QueuedTurn], bool, bool]:
        """What an earlier worker of the session left: its queued and running messages,
        whether the stored timeline leaves a turn open (no ``done`` after it), and
        whether that turn's prompt was stored with the conversation."""
        if not conversation and not record.num_turns and not record.last_seq:
            return [], False, True  # a new session: nothing can be queued yet
        stored = await self.registry.list_turns(record.id)
        if not any(item.state == "running" for item in stored):
            return stored, False, True

        async def read(after: int, limit: int) -> list[EventRecord]:
            return await self.registry.list_events(record.id, after, limit)

        tail = await open_turn_tail(read, record.last_seq)
        return stored, tail is not None, tail is None or prompt_stored(tail)

    async def _open(
        self, record: SessionRecord, agent: AgentRef, conversation: list[dict[str, Any]],
        snapshot: bytes | None,
    ) -> Bound:
        agent_path = await agent_cache.materialize(
            self.settings.agent_cache_dir, agent,
            lambda: self.registry.agent_op(
                "agents.archive", agent.name, agent.version, tenant=agent.tenant
            ),
        )
        ws = self.settings.workspaces_dir / record.id
        signature = await asyncio.to_thread(workspace.prepare, ws, agent_path, snapshot)
        spec = await asyncio.to_thread(load_agent, agent_path)
        # The agent's env (set at deploy or PATCH) joins its settings.json env; the
        # session's extraEnv still wins over both.
        spec = dataclasses.replace(spec, env={**spec.env, **agent.env})
        sandbox = self._logged(create_sandbox(
            self.settings, ws, extra_env={**spec.env, **record.config.extra_env},
            sandbox_id=self.sandbox_id, network=agent_network(spec),
        ), record.id)
        from ash_ray.agent.loop import AgentLoop

        loop = AgentLoop(self.client, spec, sandbox, self.settings, session_id=record.id)
        return Bound(
            record=record, log=EventLog(record.id, last_seq=record.last_seq), spec=spec,
            sandbox=sandbox, loop=loop, conversation=list(conversation),
            last_signature=signature,
        )

    def _turn_open(self) -> bool:
        return self.turns is not None and self.turns.open

    async def watch(self) -> None:
        """Returns when the session bound now (or next) leaves this worker, and fails the
        moment this process dies: the registry's death watch of that session."""
        await self.guard.unbound.wait()

    async def unbind(self, session_id: str) -> bool:
        """After :meth:`release`: forget ``session_id`` and wait in the pool for the next
        bind. False (the registry then kills the worker) unless the session was released
        here and nothing of it still runs, or when the process has grown past
        ``ASH_WORKER_MAX_RSS_MB``."""
        s = self.guard.bound
        if s is None or s.record.id != session_id or self.turns is None:
            return False
        if not self.turns.quiet() or not self.turns.closing or self.persist is None:
            return False
        await self.persist.close()
        s.log.close()  # its followers go looking for the session's next worker
        self.guard.reset()
        self.turns = self.persist = self.logbook = None
        self.client = self.server_client  # a session's own key stays with it
        return not grown_past(self.settings.worker_max_rss_mb)

    @bound
    async def snapshot(self, s: Bound, force: bool = False) -> bytes | None:
        """The workspace as tar.gz when it changed since the last snapshot (or ``force``)."""
        return await _snapshot(s, force)

    async def _snapshot_to_store(self, s: Bound, force: bool = False) -> None:
        data = await _snapshot(s, force)
        if data is not None:
            await self.registry.put_snapshot(s.record.id, data)

    @bound
    async def release(self, s: Bound, status: str) -> SessionRecord:
        """Finish before the registry kills this worker: stop the turn, save, snapshot."""
        return await self._release(s, status)

    @bound
    async def release_idle(self, s: Bound, status: str) -> SessionRecord | None:
        """:meth:`release` if no turn runs, waits in line or is finishing, else None (and
        nothing changes): an eviction or idle sweep is decided on the registry's view of
        this worker, which lags it; a turn that has just started must not be stopped."""
        assert self.turns is not None and self.persist is not None
        if not self.turns.idle():
            await self.persist.flush(wait=True)  # the registry hears of the turn first
            return None
        # No await before ``stop`` marks the runner closing: a turn cannot slip in.
        return await self._release(s, status)

    async def _release(self, s: Bound, status: str) -> SessionRecord:
        assert self.turns is not None and self.persist is not None
        await self.turns.stop(self.settings.drain_timeout_s)
        priority.serving(False)  # no turn waits for the rest: behind the serving workers
        s.record = s.record.model_copy(update={"status": status})
        s.log.emit(LIFECYCLE, lifecycle_entry(status))  # after the stopped turn's done
        # Ended sessions keep their last snapshot too: their files stay readable.
        await self._snapshot_to_store(s, force=True)
        await self.persist.flush(wait=True)
        await self._flush_logs()
        # The store holds the snapshot now; a later cold resume may land on another node.
        await s.loop.aclose()
        await s.sandbox.close()
        await asyncio.to_thread(shutil.rmtree, s.sandbox.workspace, True)
        return s.record


async def _snapshot(s: Bound, force: bool) -> bytes | None:
    ws = s.sandbox.workspace
    sig = await asyncio.to_thread(workspace.signature, ws)
    if not force and sig == s.last_signature:
        return None
    data = await asyncio.to_thread(workspace.archive, ws)
    s.last_signature = sig
    return data


def grown_past(limit_mb: int) -> bool:
    """Whether this process's resident memory is above ``limit_mb`` (0: no limit): a
    worker that grew is retired rather than reused."""
    if not limit_mb:
        return False
    rss = rss_mb()
    if rss > limit_mb:
        logger.info("worker at %.0f MiB RSS (limit %d): retired, not reused", rss, limit_mb)
        return True
    return False


def node_id() -> str:
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
