"""SessionWorker: the Ray actor that holds one live session and runs its turns.

A worker starts unbound (in the warm pool) and is bound to a session by the registry.
This class is a thin shell over plain asyncio parts: :class:`~.turns.TurnRunner` runs the
turns, :class:`~.persist.Persister` saves what they produce through the registry, and
:mod:`~.streams` follows the event log for every streaming call; its bind, release and
unbind live in :mod:`~.binding` (a mixin). Every session method
waits for the bind behind one guard (:func:`~.state.bound`): the registry answers a create
or resume before the worker has copied the agent's folder.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray

from ash_ray.agent.spec import agent_network
from ash_ray.config import Settings
from ash_ray.content import Prompt
from ash_ray.handles import Event, ExecOutput, RegistryClient, TurnOutcome, WorkerApi
from ash_ray.lifecycle_events import LIFECYCLE
from ash_ray.models import SessionRecord, utcnow
from ash_ray.sandbox import create_sandbox
from ash_ray.session import streams
from ash_ray.session.binding import WorkerBinding, node_id
from ash_ray.session.metrics import SessionMetrics, rss_mb
from ash_ray.session.persist import Persister
from ash_ray.session.state import BindGuard, Bound, bound, bound_stream

if TYPE_CHECKING:
    from ash_ray.session.turns import TurnRunner


class SessionWorker(WorkerBinding):
    """One session's process. Created only by the registry (see DESIGN section 2)."""

    def __init__(self, settings: Settings, sandbox_id: str) -> None:
        # The agent side (the loop, the anthropic SDK: ~55 MiB) loads here, in the worker:
        # the registry imports this module too, to create workers, and runs no agent.
        from ash_ray.session.model_client import server_client

        self.settings = settings
        self.sandbox_id = sandbox_id
        # One server client for the process: its connection pool and TLS context (loading
        # the CA bundle: tens of ms) serve every session on this worker in turn.
        self.server_client = self.client = server_client(settings)
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
        return {
            "sandboxId": self.sandbox_id,
            "pid": os.getpid(),
            "nodeId": node_id(),
            "rssMB": round(rss_mb(), 1),
        }


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
            s.sandbox = s.loop.sandbox = self._logged(create_sandbox(
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


    # ------------------------------------------------------------------ turns

    @bound
    async def send(self, s: Bound, prompt: Prompt, options: dict[str, Any]) -> int:
        """Start a turn; returns the sequence number of its ``session_start`` event."""
        return await self._start(s, prompt, options)

    async def _start(self, s: Bound, prompt: Prompt, options: dict[str, Any]) -> int:
        """Start a turn (or wait in line for it), its prompt saved before any caller hears
        of it: a whole-server crash right after must not lose an acknowledged message."""
        assert self.turns is not None
        start = await self.turns.start(prompt, options)
        await self.turns.start_saved_now()
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



def _queued(options: dict[str, Any] | None) -> dict[str, Any]:
    """The Ray-native calls queue a message sent while a turn runs (HTTP rejects it)."""
    return {"if_busy": "queue", **(options or {})}



def _conforms(worker: SessionWorker) -> WorkerApi:
    return worker  # mypy: the shell has every method the clients call, typed alike
