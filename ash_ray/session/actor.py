"""SessionWorker: the Ray actor that holds one live session and runs its turns.

A worker starts unbound (in the warm pool), is bound to a session by the registry, and
then runs each turn as its own asyncio task, so that a client that goes away does not
cancel the turn. Every event is numbered in the session's :class:`EventLog`; persistence
goes to the registry's write-behind queue in small batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import anthropic
import psutil
import ray

from ash_ray import __version__
from ash_ray.agent import AgentLoop, AgentSpec, TurnOptions, load_agent
from ash_ray.agent.warmup import warm_sdk
from ash_ray.config import Settings
from ash_ray.errors import AshError, Conflict, SessionBusy, SessionEnded, Unavailable
from ash_ray.models import (
    MessageRecord,
    SessionRecord,
    Usage,
    UsageRecord,
    WriteBatch,
    new_id,
    utcnow,
)
from ash_ray.names import REGISTRY_NAME
from ash_ray.sandbox import Sandbox, create_sandbox
from ash_ray.session import workspace
from ash_ray.session.events import EventLog
from ash_ray.session.metrics import SessionMetrics

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.02
# A call may reach a worker while the registry's bind of it still runs (the registry
# answers create and resume without waiting for it): session calls wait this long.
BIND_WAIT_S = 30.0


class SessionWorker:
    """One session's process. Created only by the registry (see DESIGN section 2)."""

    def __init__(self, settings: Settings, sandbox_id: str) -> None:
        self.settings = settings
        self.sandbox_id = sandbox_id
        key = settings.anthropic_api_key
        self.client = anthropic.AsyncAnthropic(
            api_key=key.get_secret_value() if key else "unset",
            base_url=settings.anthropic_base_url,
            max_retries=2,
        )
        self.metrics = SessionMetrics()
        # Pay the one-time costs now, while the worker waits in the pool, not in a
        # session's first turn: the sandbox probes (bwrap, cgroups), and the registry
        # handle (resolving it imports the registry's modules, about a second here).
        with tempfile.TemporaryDirectory() as probe:
            create_sandbox(settings, Path(probe))
        self._registry: Any = ray.get_actor(REGISTRY_NAME, namespace=settings.namespace)
        self.record: SessionRecord | None = None
        self.log: EventLog | None = None
        self.sandbox: Sandbox | None = None
        self.spec: AgentSpec | None = None
        self.loop: AgentLoop | None = None
        self.conversation: list[dict] = []
        self.saved_messages = 0
        self.turn_task: asyncio.Task[None] | None = None
        self.turn_open = False  # True from session_start until done
        self.interrupt_flag = asyncio.Event()
        self.last_signature: tuple | None = None
        self.pending_usage: list[UsageRecord] = []
        self.dirty = asyncio.Event()
        self.flusher: asyncio.Task[None] | None = None
        self.flush_lock = asyncio.Lock()
        self._stats: dict[str, Any] = {}
        self._unsent: WriteBatch | None = None
        self.bound = asyncio.Event()
        self._warmed = False
        self.bind_error: str | None = None

    # ------------------------------------------------------------------ lifecycle

    async def ready(self) -> dict[str, Any]:
        """Liveness probe; also tells where the worker runs.

        The first call (the pool's, before the worker counts as warm) also runs the SDK's
        first-request paths, so that a session's first answer does not pay them.
        """
        if not self._warmed:
            self._warmed = True
            await warm_sdk()
        ctx = ray.get_runtime_context()
        rss = psutil.Process().memory_info().rss / (1024 * 1024)
        return {
            "sandboxId": self.sandbox_id,
            "pid": os.getpid(),
            "nodeId": ctx.get_node_id(),
            "rssMB": round(rss, 1),
        }

    async def bind(
        self,
        record: SessionRecord,
        agent_path: str,
        conversation: list[dict],
        snapshot: bytes | None,
    ) -> dict[str, Any]:
        """Attach this worker to a session: workspace, sandbox, loop, conversation."""
        if self.record is not None and self.record.id != record.id:
            raise Conflict(f"worker {self.sandbox_id} already serves {self.record.id}")
        try:
            ws = self.settings.workspaces_dir / record.id
            self.last_signature = await asyncio.to_thread(
                workspace.prepare, ws, Path(agent_path), snapshot
            )
            self.spec = load_agent(Path(agent_path))
            self.sandbox = create_sandbox(
                self.settings, ws, extra_env={**self.spec.env, **record.config.extra_env},
                sandbox_id=self.sandbox_id,
            )
            self.loop = AgentLoop(
                self.client, self.spec, self.sandbox, self.settings, session_id=record.id
            )
        except Exception as exc:
            self.bind_error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.bound.set()
        self.record = record
        self.log = EventLog(record.id, last_seq=record.last_seq)
        self.conversation = list(conversation)
        self.saved_messages = len(self.conversation)
        if self.flusher is None:
            self.flusher = asyncio.create_task(self._flush_loop())
        return {"nodeId": ray.get_runtime_context().get_node_id()}

    async def watch(self) -> None:
        """Never returns: the registry's pending call fails the moment this process dies."""
        await asyncio.Future()

    async def _bound(self) -> tuple[SessionRecord, EventLog]:
        """The session, once the registry's bind has run (see BIND_WAIT_S)."""
        if not self.bound.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.bound.wait(), BIND_WAIT_S)
        if self.bind_error is not None:
            raise Unavailable(f"this session's worker failed to start: {self.bind_error}")
        return self._session()

    def _session(self) -> tuple[SessionRecord, EventLog]:
        if self.record is None or self.log is None:
            raise Conflict("this session worker is not bound to a session")
        return self.record, self.log

    async def set_status(self, status: str, wait: bool = True) -> dict[str, Any]:
        record, _ = await self._bound()
        self.record = record.model_copy(update={"status": status, "last_active_at": utcnow()})
        await self._flush(wait=wait)
        return self.record.public()

    async def update_config(self, config: dict[str, Any]) -> dict[str, Any]:
        record, _ = await self._bound()
        new_config = record.config.model_copy(update=config)
        self.record = record.model_copy(update={"config": new_config})
        if "extra_env" in config and self.sandbox is not None and self.spec is not None:
            old = self.sandbox
            self.sandbox = create_sandbox(
                self.settings, old.workspace, extra_env={**self.spec.env, **new_config.extra_env},
                sandbox_id=self.sandbox_id,
            )
            assert self.loop is not None
            self.loop.sandbox = self.sandbox
            await old.close()
        await self._flush(wait=True)
        return self.record.public()

    async def describe(self) -> dict[str, Any]:
        """What an operator wants to see in `ash-ray ps` or the dashboard."""
        info = await self.ready()
        if self.record is None:
            return {**info, "bound": False}
        idle = 0.0 if self.turn_open else (utcnow() - self.record.last_active_at).total_seconds()
        return {
            **info,
            "bound": True,
            "sessionId": self.record.id,
            "agent": self.record.agent_name,
            "status": self.record.status,
            "turnRunning": self.turn_open,
            "idleSeconds": round(idle, 3),
            "numTurns": self.record.num_turns,
            "lastSeq": self.log.last_seq if self.log else 0,
            "usage": self.record.usage.model_dump(),
        }

    async def snapshot(self, force: bool = False) -> bytes | None:
        """The workspace as tar.gz when it changed since the last snapshot (or ``force``)."""
        await self._bound()
        if self.sandbox is None:
            return None
        ws = self.sandbox.workspace
        sig = await asyncio.to_thread(workspace.signature, ws)
        if not force and sig == self.last_signature:
            return None
        data = await asyncio.to_thread(workspace.archive, ws)
        self.last_signature = sig
        return data

    async def release(self, status: str) -> dict[str, Any]:
        """Finish before the registry kills this worker: stop the turn, save, snapshot."""
        record, _ = await self._bound()
        if self.turn_task is not None and not self.turn_task.done():
            self.interrupt_flag.set()
            await asyncio.wait({self.turn_task}, timeout=self.settings.drain_timeout_s)
        self.record = record.model_copy(update={"status": status})
        if status != "ended":
            data = await self.snapshot(force=True)
            if data is not None:
                await self._registry.put_snapshot.remote(record.id, data)
        await self._flush(wait=True)
        # The store holds the snapshot now; a later cold resume may land on another node.
        if self.sandbox is not None:
            await self.sandbox.close()
            await asyncio.to_thread(shutil.rmtree, self.sandbox.workspace, True)
        return self.record.public()

    # ------------------------------------------------------------------ turns

    async def send(self, prompt: str, options: dict[str, Any]) -> int:
        """Start a turn; returns the sequence number of its ``session_start`` event."""
        record, log = await self._bound()
        if record.status == "ended":
            raise SessionEnded(f"session {record.id} has ended", session_id=record.id)
        if self.turn_task is not None and not self.turn_task.done():
            if self.turn_open:
                raise SessionBusy(
                    f"session {record.id} is running a turn; wait for it or interrupt it",
                    session_id=record.id,
                )
            await self.turn_task  # only the end-of-turn snapshot is left
        self.interrupt_flag = asyncio.Event()
        self.turn_open = True
        self.record = record.model_copy(update={"status": "active", "last_active_at": utcnow()})
        start, _, _ = log.emit("session_start", {"sessionId": record.id, "version": __version__})
        self.turn_task = asyncio.create_task(self._run_turn(prompt, options))
        self.dirty.set()  # the prompt and "running" reach the store without waiting for the model
        return start

    async def run_turn(self, prompt: Any, options: dict[str, Any], heartbeat_s: float):  # type: ignore[no-untyped-def]
        """Start a turn and push its event batches (``stream_events`` of it), in one call.

        The first batch holds ``session_start``; a refusal (busy, ended) raises before it.
        """
        start = await self.send(prompt, options)
        async for batch in self.stream_events(start - 1, heartbeat_s):
            yield batch

    async def ask(self, prompt: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run a turn and return its outcome (for ``ray.get`` from pipelines)."""
        outcome: dict[str, Any] = {"sessionId": (await self._bound())[0].id, "error": None}
        async for _seq, type_, data in self._turn_events(prompt, options or {}):
            if type_ == "message" and data.get("type") == "result":
                outcome.update(
                    result=data.get("result"),
                    structuredOutput=data.get("structured_output"),
                    usage=data.get("usage"),
                    numTurns=data.get("num_turns"),
                    subtype=data.get("subtype"),
                    isError=data.get("is_error", False),
                )
            elif type_ == "error":
                outcome["error"] = data.get("error")
        return outcome

    async def ask_stream(self, prompt: str, options: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
        """The same events as the SSE stream, as a Ray streaming generator of (seq, type, data)."""
        async for event in self._turn_events(prompt, options or {}):
            yield event

    async def _turn_events(self, prompt: str, options: dict[str, Any]):  # type: ignore[no-untyped-def]
        _, log = self._session()
        seen = await self.send(prompt, options) - 1
        while True:
            for event in await log.wait(seen, 30.0):
                yield event
                seen = event[0]
                if event[1] == "done":
                    return

    async def interrupt(self) -> bool:
        running = self.turn_open
        self.interrupt_flag.set()
        return running

    async def stream_events(self, after: int, heartbeat_s: float):  # type: ignore[no-untyped-def]
        """Batches of events with seq > after until ``done`` (``[]`` = heartbeat).

        Called with ``num_returns="streaming"``: batches are pushed as they happen.
        """
        _, log = await self._bound()
        seen = after
        while True:
            batch = await log.wait(seen, heartbeat_s)
            yield batch
            if batch:
                seen = batch[-1][0]
                if any(event[1] == "done" for event in batch):
                    return

    async def oldest_seq(self) -> int:
        _, log = await self._bound()
        return log.oldest_seq()

    async def _run_turn(self, prompt: str, options: dict[str, Any]) -> None:
        record, log = self._session()
        assert self.loop is not None
        cfg = record.config
        turn_opts = TurnOptions(
            model=options.get("model") or cfg.model,  # None: the agent's, then the default
            max_turns=options.get("max_turns") or self.settings.max_turns,
            max_budget_usd=options.get("max_budget_usd"),
            include_partial=bool(options.get("include_partial_messages")),
            system_prompt=cfg.system_prompt,
            allowed_tools=cfg.allowed_tools,
            disallowed_tools=cfg.disallowed_tools,
            output_format=options.get("output_format"),
        )
        started = time.perf_counter()
        first_token_ms: float | None = None
        usage = Usage()
        turns = 0
        try:
            async for ev in self.loop.run_turn(
                self.conversation, prompt, turn_opts, self.interrupt_flag
            ):
                if first_token_ms is None and ev.type in ("text_delta", "message"):
                    first_token_ms = (time.perf_counter() - started) * 1000
                log.emit(ev.type, ev.data)
                if ev.type == "tool_use":
                    self.metrics.tool_call(record.agent_name, ev.data.get("name", "?"))
                elif ev.type == "message" and ev.data.get("type") == "result":
                    usage = Usage.model_validate(ev.data.get("usage") or {})
                    turns = int(ev.data.get("num_turns") or 0)
                self._queue_new_messages()
        except asyncio.CancelledError:
            log.emit("error", {"error": "turn cancelled"})
            raise
        except AshError as exc:
            log.emit("error", {"error": str(exc)})
        except anthropic.APIError as exc:
            log.emit("error", {"error": f"model API error: {exc}"})
        except Exception as exc:
            logger.exception("turn failed", extra={"session_id": record.id})
            log.emit("error", {"error": f"{type(exc).__name__}: {exc}"})
        finally:
            self._repair_conversation()
            self._queue_new_messages()
            latency_ms = (time.perf_counter() - started) * 1000
            current = self.record or record
            self.record = current.model_copy(
                update={
                    "status": "active" if current.status == "active" else current.status,
                    "last_active_at": utcnow(),
                    "num_turns": current.num_turns + 1,
                    "usage": current.usage.add(usage),
                }
            )
            self.pending_usage.append(
                UsageRecord(
                    session_id=record.id,
                    agent_name=record.agent_name,
                    turn=self.record.num_turns,
                    model=self.loop.model,
                    usage=usage,
                    created_at=utcnow(),
                )
            )
            self.metrics.turn(record.agent_name, usage, latency_ms, turns)
            self._stats = {"turn_ms": latency_ms, "first_token_ms": first_token_ms}
            # What a client reads after `done` is committed, `done` included: it is saved
            # with the turn's last rows (which also say the turn no longer runs) and
            # reaches the streams once they are.
            done = log.emit("done", {"sessionId": record.id}, publish=False)
            self.turn_open = False
            try:
                await self._flush(wait=True)
            except Exception:
                logger.exception("end-of-turn flush failed; the background flusher retries")
                self.dirty.set()
            log.publish(done)
        data = await self.snapshot()
        if data is not None:
            await self._registry.put_snapshot.remote(record.id, data)

    def _repair_conversation(self) -> None:
        """Keep the conversation valid for the Messages API after an error or interrupt."""
        if not self.conversation:
            return
        last = self.conversation[-1]
        if last["role"] == "assistant" and isinstance(last["content"], list):
            pending = [b["id"] for b in last["content"] if b.get("type") == "tool_use"]
            if pending:
                self.conversation.append(
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": tid,
                                "content": "interrupted before the tool ran",
                                "is_error": True,
                            }
                            for tid in pending
                        ],
                    }
                )
        elif last["role"] == "user":
            self.conversation.append(
                {"role": "assistant", "content": [{"type": "text", "text": "(turn interrupted)"}]}
            )

    # ------------------------------------------------------------------ tools for HTTP

    async def exec(self, command: str, timeout_s: float | None) -> dict[str, Any]:
        await self._bound()
        assert self.sandbox is not None
        result = await self.sandbox.run(command, timeout_s=timeout_s)
        return {"exitCode": result.exit_code, "stdout": result.stdout, "stderr": result.stderr}

    async def workspace_path(self) -> str:
        await self._bound()
        assert self.sandbox is not None
        return str(self.sandbox.workspace)

    # ------------------------------------------------------------------ persistence

    def _queue_new_messages(self) -> None:
        self.dirty.set()

    def _collect(self) -> tuple[WriteBatch, dict[str, Any]]:
        record, log = self._session()
        now = utcnow()
        messages = []
        for i in range(self.saved_messages, len(self.conversation)):
            msg = self.conversation[i]
            messages.append(
                MessageRecord(
                    id=new_id(),
                    session_id=record.id,
                    sequence=i + 1,
                    role=msg["role"],
                    content=msg["content"],
                    created_at=now,
                )
            )
        self.saved_messages = len(self.conversation)
        events = log.take_unsaved()
        session = record.model_copy(update={"last_seq": log.last_seq})
        usage, self.pending_usage = self.pending_usage, []
        stats, self._stats = {**self._stats, "running": self.turn_open}, {}
        batch = WriteBatch(sessions=[session], messages=messages, events=events, usage=usage)
        return batch, stats

    async def _flush(self, wait: bool) -> None:
        async with self.flush_lock:
            batch, stats = self._collect()
            if self._unsent is not None:
                # Rows of a failed flush go first; the store ignores rows it already has.
                prior = self._unsent
                batch = WriteBatch(
                    sessions=batch.sessions,
                    messages=prior.messages + batch.messages,
                    events=prior.events + batch.events,
                    usage=prior.usage + batch.usage,
                )
            self._unsent = batch
            ref = self._registry.record.remote(batch, stats)
            if not wait:
                self._unsent = None
                return
            await ref
            self._unsent = None

    async def _flush_loop(self) -> None:
        """Flush at most every FLUSH_INTERVAL_S; the first change after a quiet spell (a
        turn's prompt) goes at once, before the model's first token arrives."""
        last = 0.0
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            pause = FLUSH_INTERVAL_S - (time.monotonic() - last)
            if pause > 0:
                await asyncio.sleep(pause)
            last = time.monotonic()
            try:
                await self._flush(wait=True)
            except Exception:
                logger.exception("background flush failed; retrying")
                self.dirty.set()
                await asyncio.sleep(0.5)
