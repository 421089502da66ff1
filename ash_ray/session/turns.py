"""Running a session's turns: one asyncio task a turn, numbered events, usage, repair.

A turn runs as its own task, so that a client that goes away does not cancel it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anthropic

from ash_ray import __version__
from ash_ray.agent.messages import asks_for_tools
from ash_ray.config import Settings
from ash_ray.content import Prompt
from ash_ray.errors import (
    AshError,
    InvalidInput,
    SessionBusy,
    SessionEnded,
    WorkerLost,
    WorkerReleasing,
)
from ash_ray.lifecycle_events import UNSAVED_SEQ_MARGIN
from ash_ray.models import QueuedTurn, UsageRecord, new_id, utcnow
from ash_ray.session.metrics import SessionMetrics, TurnTally
from ash_ray.session.options import plain_options, turn_options
from ash_ray.session.persist import Persister
from ash_ray.session.recovery import (
    LOST_TURN,
    close_lost_tools,
    continuable,
    repair_conversation,
)
from ash_ray.session.state import Bound

logger = logging.getLogger(__name__)

IF_BUSY = ("queue", "reject", "interrupt")
# How many ended turns a worker knows by message id (for calls re-sent to it).
ENDED_KEPT = 64
# The longest a turn's start waits for its prompt to join the conversation before it is
# saved without it (prompt hooks that run long; see TurnRunner._save_start).
PROMPT_WAIT_S = 0.05


class Inbox(Protocol):
    """Where queued and running messages are kept (the registry; a fake in unit tests)."""

    def put_turn(self, item: QueuedTurn) -> Awaitable[None]: ...
    def delete_turn(self, session_id: str, message_id: str) -> Awaitable[None]: ...


class TurnRunner:
    """Starts turns, feeds their events to the log, and closes them (``done``) saved.

    A message that arrives while a turn runs follows its ``if_busy`` option: ``reject``
    (409), ``queue`` (FIFO: each runs as its own turn, and its call returns when its turn
    starts) or ``interrupt`` (the running turn is stopped, then this one runs). Queued
    messages are in the store before the call goes on, so a new worker runs them.
    """

    def __init__(
        self,
        settings: Settings,
        session: Bound,
        persist: Persister,
        metrics: SessionMetrics,
        after_turn: Callable[[], Awaitable[None]],
        inbox: Inbox,
    ) -> None:
        self.settings = settings
        self.session = session
        self.persist = persist
        self.metrics = metrics
        self.after_turn = after_turn
        self.inbox = inbox
        self.task: asyncio.Task[None] | None = None
        self.open = False  # True from session_start until done
        self.interrupt_flag = asyncio.Event()
        self.current: QueuedTurn | None = None
        self.current_start = 0  # the first seq of the current turn
        self.line: deque[tuple[QueuedTurn, asyncio.Future[int]]] = deque()
        self.closing = False
        # Messages whose turn a lost worker ran and that were not continued: a caller
        # re-sending one (its call is retried once) hears so instead of a second answer.
        self.lost: set[str] = set()
        # The first seq of the last turns that ended here, by message: a call re-sent
        # after its worker was lost (the turn continued here and ended before the call
        # came) gets that turn's events again, not a second answer.
        self.ended: dict[str, int] = {}
        self._background: set[asyncio.Task[None]] = set()
        self.prompt_in = asyncio.Event()  # the current turn's prompt is in the conversation
        self.start_saved: asyncio.Future[None] | None = None  # the current turn's start save

    def _busy(self) -> bool:
        return self.open or bool(self.line)

    def idle(self) -> bool:
        """No turn runs, waits in line, or is finishing (its end-of-turn snapshot, which
        a message sent meanwhile waits for before its turn starts)."""
        return not self._busy() and (self.task is None or self.task.done())

    def quiet(self) -> bool:
        """:meth:`idle`, and no queue write of a turn still on its way to the store."""
        return self.idle() and not self._background

    async def start(self, prompt: Prompt, options: dict[str, Any]) -> int:
        """Start a turn (or wait in line for it); returns the seq of its ``session_start``."""
        s = self.session
        self._check_open()
        if_busy = options.get("if_busy") or "reject"
        if if_busy not in IF_BUSY:
            raise InvalidInput(f"ifBusy must be one of {', '.join(IF_BUSY)}, got {if_busy!r}")
        message_id = str(options.get("message_id") or new_id())
        if message_id in self.lost:
            raise WorkerLost(
                f"the worker running this message's turn in session {s.record.id} was lost "
                "and the turn was ended; send it again", session_id=s.record.id,
            )
        known = self._known(message_id)
        if known is not None:  # the same call again (its first worker was lost)
            return await known
        item = QueuedTurn(
            session_id=s.record.id, message_id=message_id, position=time.time_ns(),
            prompt=prompt, options=plain_options(options),
        )
        while not self._busy():
            if self.task is None or self.task.done():
                return self._begin(item)
            await asyncio.wait({self.task})  # only the end-of-turn snapshot is left
            self._check_open()  # a release may have begun meanwhile
        if if_busy == "reject":
            raise SessionBusy(
                f"session {s.record.id} is running a turn; wait for it, interrupt it, "
                "or send with ifBusy=queue",
                session_id=s.record.id,
            )
        if if_busy == "interrupt":
            self.interrupt_flag.set()
        await self.inbox.put_turn(item)  # durable before the caller hears of it
        if not self._busy() and (self.task is None or self.task.done()):
            return self._begin(item)
        turn: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.line.append((item, turn))
        # The caller may go away; its turn still runs when its time comes.
        return await asyncio.shield(turn)

    async def start_saved_now(self) -> None:
        """Wait until the start of the turn that runs now is saved (see _save_start)."""
        if self.start_saved is not None:
            await asyncio.shield(self.start_saved)

    def _check_open(self) -> None:
        s = self.session
        if s.record.status == "ended":
            raise SessionEnded(f"session {s.record.id} has ended", session_id=s.record.id)
        if self.closing:
            raise WorkerReleasing(
                f"session {s.record.id}'s worker is being released; attach again and resend",
                session_id=s.record.id,
            )

    def _known(self, message_id: str) -> Awaitable[int] | None:
        if self.open and self.current is not None and self.current.message_id == message_id:
            turn: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            turn.set_result(self.current_start)
            return turn
        for item, waiting in self.line:
            if item.message_id == message_id:
                return asyncio.shield(waiting)
        if message_id in self.ended:
            turn = asyncio.get_running_loop().create_future()
            turn.set_result(self.ended[message_id])
            return turn
        return None

    def _begin(self, item: QueuedTurn, continued: bool = False) -> int:
        s = self.session
        self.interrupt_flag = asyncio.Event()
        self.open = True
        self.current = item.model_copy(update={"state": "running"})
        s.record = s.record.model_copy(update={"status": "active", "last_active_at": utcnow()})
        if continued:
            self.current_start = s.log.last_seq + 1
            close_lost_tools(s.conversation, s.log)
            prompt: Prompt | None = None
        else:
            self.current_start, _, _ = s.log.emit(
                "session_start", {"sessionId": s.record.id, "version": __version__}
            )
            prompt = item.prompt
        # Kept while it runs (a new worker continues it if this one is lost): saved with
        # the prompt, before anybody hears of the turn.
        self.persist.turn_running(self.current)
        self.prompt_in = asyncio.Event()
        if prompt is None:
            self.prompt_in.set()
        self.task = asyncio.create_task(self._run(prompt, item.options))
        self.start_saved = self._spawn(self._save_start(self.task))
        return self.current_start

    async def _save_start(self, task: asyncio.Task[None]) -> None:
        """Save the turn's start (its queue row, ``session_start``) with its prompt in
        the conversation: the agent loop puts it there as its first step, after the
        prompt hooks, and sends the model request right after, so that request goes
        out first. Slow hooks do not hold the save past PROMPT_WAIT_S; the queue row
        holds the prompt meanwhile."""
        prompt_in = asyncio.ensure_future(self.prompt_in.wait())
        try:
            await asyncio.wait({prompt_in, task}, timeout=PROMPT_WAIT_S,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            prompt_in.cancel()
        await self.persist.save_now(f"session {self.session.record.id}: the turn's start")

    def _next(self) -> None:
        """Start the first queued message, if any (called when a turn has ended)."""
        while self.line and not self.open:
            item, turn = self.line.popleft()
            if self.closing or self.session.record.status == "ended":
                turn.set_exception(SessionEnded(
                    f"session {item.session_id} has ended", session_id=item.session_id
                ))  # fmt: skip
                turn.exception()  # retrieved: nobody may be waiting for it
                self._spawn(self.inbox.delete_turn(item.session_id, item.message_id))
                continue
            turn.set_result(self._begin(item))

    def recover(
        self, stored: list[QueuedTurn], turn_open: bool, prompt_saved: bool = True
    ) -> None:
        """After a bind: continue the turn a lost worker was running (when the timeline
        shows it open and ``ASH_TURN_RECOVERY=continue``), then run the stored queue."""
        loop = asyncio.get_running_loop()
        s = self.session
        for item in stored:
            if item.state == "queued":
                self.line.append((item, loop.create_future()))
        running = [item for item in stored if item.state == "running"]
        if turn_open:  # cut off mid-turn: its last events may have been seen, not saved
            s.log.skip(UNSAVED_SEQ_MARGIN)
        go_on = turn_open and self.settings.turn_recovery == "continue"
        if running and go_on and not prompt_saved:
            # Lost before its prompt joined the stored conversation: the running row
            # holds it, and the turn is asked again from there.
            self._begin(running[0])
            running = running[1:]
        elif running and go_on and continuable(s.conversation):
            self._begin(running[0], continued=True)
            running = running[1:]
        else:
            repair_conversation(s.conversation)  # closed the way an interrupted turn is
            if turn_open:  # its followers wait for a `done`
                s.log.emit("error", {"error": LOST_TURN})
                s.log.emit("done", {"sessionId": s.record.id})
                self.persist.soon()
        for item in running:
            self.lost.add(item.message_id)
            self._spawn(self.inbox.delete_turn(item.session_id, item.message_id))
        self._next()

    def _spawn(self, work: Awaitable[None]) -> asyncio.Task[None]:
        async def run() -> None:
            try:
                await work
            except Exception:
                logger.warning("turn queue write failed", exc_info=True)

        task = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def interrupt(self) -> bool:
        self.interrupt_flag.set()
        return self.open

    async def compact(self) -> dict[str, Any] | None:
        """Summarize the older turns now (``POST .../compact``); None: nothing to summarize.

        The full history stays in the store; the boundary message the loop appends is what
        a cold resume starts from. Refused (409) while a turn runs.
        """
        s = self.session
        if self.open:
            raise SessionBusy(
                f"session {s.record.id} is running a turn; compact it after the turn",
                session_id=s.record.id,
            )
        result = await s.loop.compact(s.conversation, trigger="manual")
        if result is None:
            return None
        s.log.emit("compact", result.event())
        s.log.emit("message", result.boundary_message())
        s.record = s.record.model_copy(update={
            "last_active_at": utcnow(), "usage": s.record.usage.add(result.usage),
        })  # fmt: skip
        self.persist.pending_usage.append(UsageRecord(
            session_id=s.record.id, agent_name=s.record.agent_name, turn=s.record.num_turns,
            model=s.loop.model, usage=result.usage, created_at=utcnow(),
        ))  # fmt: skip
        await self.persist.flush(wait=True)
        return result.event()

    async def stop(self, timeout_s: float) -> None:
        """Interrupt the running turn and wait (up to ``timeout_s``) for it to end.

        Queued messages stay in the store: the session's next worker runs them.
        """
        self.closing = True
        for _item, turn in self.line:
            turn.cancel()
        self.line.clear()
        if self.task is not None and not self.task.done():
            self.interrupt_flag.set()
            await asyncio.wait({self.task}, timeout=timeout_s)

    async def _run(self, prompt: Prompt | None, options: dict[str, Any]) -> None:
        s = self.session
        opts = turn_options(options, s.record.config, self.settings)
        started = time.perf_counter()
        outcome = TurnTally()
        try:
            async for ev in s.loop.run_turn(s.conversation, prompt, opts, self.interrupt_flag):
                outcome.see(ev.type, ev.data, started)
                s.log.emit(ev.type, ev.data)
                if ev.type == "message" and ev.data.get("type") == "user":
                    self.prompt_in.set()  # (the first: the prompt, in the conversation)
                if ev.type == "tool_use":
                    self.metrics.tool_call(s.record.agent_name, ev.data.get("name", "?"))
                if asks_for_tools(ev.type, ev.data):
                    # Write ahead: a worker lost while the tools run is continued from
                    # this request (they get "lost" results); unsaved, the model would be
                    # asked again and run them twice.
                    await self.persist.save_now("the model's request for tools")
                else:
                    self.persist.soon()
        except asyncio.CancelledError:
            s.log.emit("error", {"error": "turn cancelled"})
            raise
        except AshError as exc:
            s.log.emit("error", {"error": str(exc)})
        except anthropic.APIError as exc:
            s.log.emit("error", {"error": f"model API error: {exc}"})
        except Exception as exc:
            logger.exception("turn failed", extra={"session_id": s.record.id})
            s.log.emit("error", {"error": f"{type(exc).__name__}: {exc}"})
        finally:
            await self._close(outcome, (time.perf_counter() - started) * 1000)
        try:
            await self.after_turn()
        finally:
            self._next()

    async def _close(self, outcome: TurnTally, latency_ms: float) -> None:
        """Count the turn, then save it with ``done`` before any stream sees ``done``."""
        s = self.session
        repair_conversation(s.conversation)
        rec = s.record
        s.record = rec.model_copy(update={
            "last_active_at": utcnow(), "num_turns": rec.num_turns + 1,
            "usage": rec.usage.add(outcome.usage),
        })
        # One message a turn (Ash counts its `result`); compute is the turn's wall time.
        self.persist.pending_usage.append(UsageRecord(
            session_id=rec.id, agent_name=rec.agent_name, turn=s.record.num_turns,
            model=s.loop.model, usage=outcome.usage, created_at=utcnow(),
            tool_calls=outcome.tool_calls, messages=1, compute_ms=round(latency_ms),
        ))
        self.metrics.turn(rec.agent_name, outcome.usage, latency_ms, outcome.model_calls)
        self.persist.turn_stats = {"turn_ms": latency_ms, "first_token_ms": outcome.first_ms}
        # What a client reads after `done` is committed, `done` included: it is saved
        # with the turn's last rows (which also say the turn no longer runs) and
        # reaches the streams once they are.
        done = s.log.emit("done", {"sessionId": rec.id}, publish=False)
        self.open = False
        if self.current is not None:  # saved with the turn's last rows
            self.persist.turn_done(rec.id, self.current.message_id)
            self.ended[self.current.message_id] = self.current_start
            while len(self.ended) > ENDED_KEPT:
                del self.ended[next(iter(self.ended))]
        await self.persist.save_now("the turn's end")
        s.log.publish(done)
