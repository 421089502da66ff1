"""SessionWorker: the Ray actor that holds one live session and runs its turns.

A worker starts unbound (in the warm pool) and is bound to a session by the registry.
This class is a thin shell over plain asyncio parts: :class:`~.turns.TurnRunner` runs the
turns, :class:`~.persist.Persister` saves what they produce through the registry, and
:mod:`~.streams` follows the event log for every streaming call. Every session method
waits for the bind behind one guard (:func:`~.state.bound`): the registry answers a create
or resume before the worker has copied the agent's folder.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import ray

from ash_ray.agent.spec import agent_network, load_agent
from ash_ray.config import Settings
from ash_ray.content import Prompt
from ash_ray.errors import Conflict
from ash_ray.handles import Event, ExecOutput, RegistryClient, TurnOutcome, WorkerApi
from ash_ray.lifecycle_events import LIFECYCLE, open_turn_tail, prompt_stored
from ash_ray.lifecycle_events import entry as lifecycle_entry
from ash_ray.models import AgentRef, EventRecord, QueuedTurn, SessionRecord, utcnow
from ash_ray.sandbox import create_sandbox
from ash_ray.session import agent_cache, streams, workspace
from ash_ray.session.events import EventLog
from ash_ray.session.metrics import SessionMetrics
from ash_ray.session.persist import Persister
from ash_ray.session.state import BindGuard, Bound, bound, bound_stream
from ash_ray.session.worker_files import WorkerFiles
from ash_ray.tenants import CredentialRecord

if TYPE_CHECKING:
    from ash_ray.session.turns import TurnRunner

logger = logging.getLogger(__name__)


class SessionWorker(WorkerFiles):
    """One session's process. Created only by the registry (see DESIGN section 2)."""

    def __init__(self, settings: Settings, sandbox_id: str) -> None:
        # The agent side (the loop, the anthropic SDK: ~55 MiB) loads here, in the worker:
        # the registry imports this module too, to create workers, and runs no agent.
        from ash_ray.session.model_client import server_client

        self.settings = settings
        self.sandbox_id = sandbox_id
        self.client = server_client(settings)
        self.metrics = SessionMetrics()
        # Pay the one-time costs now, while the worker waits in the pool, not in a
        # session's first turn: the sandbox probes (bwrap, cgroups), and the registry
        # handle (resolving it imports the registry's modules, about a second here).
        with tempfile.TemporaryDirectory() as probe:
            create_sandbox(settings, Path(probe))
        self.registry = RegistryClient(settings.namespace)
        if ray.is_initialized():
            _ = self.registry.handle
        self.guard = BindGuard()
        self.turns: TurnRunner | None = None
        self.persist: Persister | None = None
        self._warmed = False

    # ------------------------------------------------------------------ lifecycle

    async def ready(self) -> dict[str, Any]:
        """Liveness probe; also tells where the worker runs.

        The first call (the pool's, before the worker counts as warm) also runs the SDK's
        first-request paths, so that a session's first answer does not pay them.
        """
        if not self._warmed:
            from ash_ray.agent.warmup import warm_sdk

            self._warmed = True
            await warm_sdk()
        rss = psutil.Process().memory_info().rss / (1024 * 1024)
        return {
            "sandboxId": self.sandbox_id,
            "pid": os.getpid(),
            "nodeId": _node_id(),
            "rssMB": round(rss, 1),
        }

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
        from ash_ray.session.model_client import credential_client
        from ash_ray.session.turns import TurnRunner

        try:
            if credential is not None:
                self.client = credential_client(self.settings, credential)
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
        return _node_id()

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
        sandbox = self.logged(create_sandbox(
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
        here and nothing of it still runs."""
        s = self.guard.bound
        if s is None or s.record.id != session_id or self.turns is None:
            return False
        if not self.turns.quiet() or not self.turns.closing or self.persist is None:
            return False
        await self.persist.close()
        s.log.close()  # its followers go looking for the session's next worker
        self.guard.reset()
        self.turns = self.persist = self.logbook = None
        from ash_ray.session.model_client import server_client

        self.client = server_client(self.settings)  # a session's own key stays with it
        return True

    @bound
    async def set_status(
        self, s: Bound, status: str, wait: bool = True, event: dict[str, Any] | None = None
    ) -> SessionRecord:
        """Change the status; ``event``: its ``lifecycle`` entry, numbered here (this
        worker owns the session's numbering while bound)."""
        s.record = s.record.model_copy(update={"status": status, "last_active_at": utcnow()})
        if event is not None:
            s.log.emit(LIFECYCLE, event)
        if status == "paused":
            await s.loop.aclose()  # MCP servers stop; the next turn starts them again
        assert self.persist is not None
        await self.persist.flush(wait=wait)
        return s.record

    @bound
    async def update_config(self, s: Bound, config: dict[str, Any]) -> SessionRecord:
        new_config = s.record.config.model_copy(update=config)
        s.record = s.record.model_copy(update={"config": new_config})
        if "extra_env" in config:
            old = s.sandbox
            s.sandbox = s.loop.sandbox = self.logged(create_sandbox(
                self.settings, old.workspace, extra_env={**s.spec.env, **new_config.extra_env},
                sandbox_id=self.sandbox_id, network=agent_network(s.spec),
            ), s.record.id)
            await old.close()
        assert self.persist is not None
        await self.persist.flush(wait=True)
        return s.record

    async def describe(self, for_session: str | None = None) -> dict[str, Any]:
        """What an operator wants to see in `ash-ray ps` or the dashboard (never waits).
        ``for_session``: refused unless that session is the bound one."""
        info = await self.ready()
        self.guard.check(for_session)
        s = self.guard.bound
        if s is None:
            return {**info, "bound": False}
        running = self._turn_open()
        idle = 0.0 if running else (utcnow() - s.record.last_active_at).total_seconds()
        return {
            **info,
            "bound": True,
            "sessionId": s.record.id,
            "agent": s.record.agent_name,
            "status": s.record.status,
            "turnRunning": running,
            "idleSeconds": round(idle, 3),
            "numTurns": s.record.num_turns,
            "lastSeq": s.log.last_seq,
            "usage": s.record.usage.model_dump(),
        }

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
        s.record = s.record.model_copy(update={"status": status})
        s.log.emit(LIFECYCLE, lifecycle_entry(status))  # after the stopped turn's done
        # Ended sessions keep their last snapshot too: their files stay readable.
        await self._snapshot_to_store(s, force=True)
        await self.persist.flush(wait=True)
        await self.flush_logs()
        # The store holds the snapshot now; a later cold resume may land on another node.
        await s.loop.aclose()
        await s.sandbox.close()
        await asyncio.to_thread(shutil.rmtree, s.sandbox.workspace, True)
        return s.record

    # ------------------------------------------------------------------ turns

    @bound
    async def send(self, s: Bound, prompt: Prompt, options: dict[str, Any]) -> int:
        """Start a turn; returns the sequence number of its ``session_start`` event."""
        return await self._start(s, prompt, options)

    async def _start(self, s: Bound, prompt: Prompt, options: dict[str, Any]) -> int:
        """Start a turn (or wait in line for it), its prompt saved before any caller hears
        of it: a whole-server crash right after must not lose an acknowledged message."""
        assert self.turns is not None and self.persist is not None
        start = await self.turns.start(prompt, options)
        try:
            await self.persist.flush()
        except Exception:
            logger.warning("session %s: the turn's start is not saved yet", s.record.id,
                           exc_info=True)
        return start

    @bound_stream
    async def run_turn(
        self, s: Bound, prompt: Prompt, options: dict[str, Any], heartbeat_s: float
    ) -> AsyncIterator[list[Event]]:
        """Start a turn and push its event batches (``stream_events`` of it), in one call.

        The first batch holds ``session_start``; a refusal (busy, ended) raises before it.
        """
        start = await self._start(s, prompt, options)
        async for batch in streams.follow(s.log, start - 1, heartbeat_s):
            yield batch

    @bound
    async def ask(
        self, s: Bound, prompt: Prompt, options: dict[str, Any] | None = None
    ) -> TurnOutcome:
        """Run a turn and return its outcome (for ``ray.get`` from pipelines).

        A message sent while a turn runs waits for its turn (``if_busy="queue"``).
        """
        outcome: TurnOutcome = {"sessionId": s.record.id, "error": None}
        async for _seq, type_, data in self._turn_events(s, prompt, _queued(options)):
            if type_ == "message" and data.get("type") == "result":
                outcome.update({
                    "result": data.get("result"),
                    "structuredOutput": data.get("structured_output"),
                    "usage": data.get("usage"),
                    "numTurns": data.get("num_turns"),
                    "subtype": data.get("subtype"),
                    "isError": data.get("is_error", False),
                })
            elif type_ == "error":
                outcome["error"] = data.get("error")
        return outcome

    @bound_stream
    async def ask_stream(
        self, s: Bound, prompt: Prompt, options: dict[str, Any] | None = None
    ) -> AsyncIterator[Event]:
        """The same events as the SSE stream, as a Ray streaming generator of (seq, type, data).

        Like ``ask``, a message sent while a turn runs waits for its turn by default.
        """
        async for event in self._turn_events(s, prompt, _queued(options)):
            yield event

    async def _turn_events(
        self, s: Bound, prompt: Prompt, options: dict[str, Any]
    ) -> AsyncIterator[Event]:
        start = await self._start(s, prompt, options)
        async for event in streams.events(s.log, start - 1):
            yield event

    @bound
    async def interrupt(self, s: Bound) -> bool:
        assert self.turns is not None
        return self.turns.interrupt()

    @bound
    async def compact(self, s: Bound) -> dict[str, Any] | None:
        assert self.turns is not None
        return await self.turns.compact()

    @bound_stream
    async def stream_events(
        self, s: Bound, after: int, heartbeat_s: float
    ) -> AsyncIterator[list[Event]]:
        """Batches of events with seq > after until ``done`` (``[]`` = heartbeat).

        Called with ``num_returns="streaming"``: batches are pushed as they happen.
        """
        turn_start = self.turns.current_start if self.turns else 0
        async for batch in streams.follow(s.log, after, heartbeat_s, turn_start):
            yield batch

    @bound
    async def oldest_seq(self, s: Bound) -> int:
        return s.log.oldest_seq()

    # ------------------------------------------------------------------ tools for HTTP

    @bound
    async def exec(self, s: Bound, command: str, timeout_s: float | None) -> ExecOutput:
        result = await s.sandbox.run(command, timeout_s=timeout_s)
        return {"exitCode": result.exit_code, "stdout": result.stdout, "stderr": result.stderr}

    @bound
    async def workspace_path(self, s: Bound) -> str:
        return str(s.sandbox.workspace)


async def _snapshot(s: Bound, force: bool) -> bytes | None:
    ws = s.sandbox.workspace
    sig = await asyncio.to_thread(workspace.signature, ws)
    if not force and sig == s.last_signature:
        return None
    data = await asyncio.to_thread(workspace.archive, ws)
    s.last_signature = sig
    return data


def _queued(options: dict[str, Any] | None) -> dict[str, Any]:
    """The Ray-native calls queue a message sent while a turn runs (HTTP rejects it)."""
    return {"if_busy": "queue", **(options or {})}


def _node_id() -> str:
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""


def _conforms(worker: SessionWorker) -> WorkerApi:
    return worker  # mypy: the shell has every method the clients call, typed alike
