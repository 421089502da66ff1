"""Running a session's turns: one asyncio task a turn, numbered events, usage, repair.

A turn runs as its own task, so that a client that goes away does not cancel it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anthropic

from ash_ray import __version__
from ash_ray.agent import TurnOptions
from ash_ray.config import Settings
from ash_ray.content import Prompt
from ash_ray.errors import AshError, SessionBusy, SessionEnded
from ash_ray.models import SessionConfig, Usage, UsageRecord, utcnow
from ash_ray.session.metrics import SessionMetrics
from ash_ray.session.persist import Persister
from ash_ray.session.state import Bound

logger = logging.getLogger(__name__)

_TURN_FIELDS = {f.name for f in dataclasses.fields(TurnOptions)}


def turn_options(options: dict[str, Any], config: SessionConfig, settings: Settings) -> TurnOptions:
    """The loop's options of one turn: the message's, else the session's, else defaults.

    Every other option of the message or the session whose name is a field of
    :class:`TurnOptions` (``thinking``, ``effort``, ``betas``, ...) is passed on as it is,
    so a field the loop learns reaches it without a change here.
    """
    known: dict[str, Any] = {
        "model": options.get("model") or config.model,  # None: the agent's, then the default
        "max_turns": options.get("max_turns") or settings.max_turns,
        "max_budget_usd": options.get("max_budget_usd"),
        "include_partial": bool(options.get("include_partial_messages")),
        "system_prompt": config.system_prompt,
        "allowed_tools": config.allowed_tools,
        "disallowed_tools": config.disallowed_tools,
        "output_format": options.get("output_format"),
    }
    session = config.model_dump(exclude_none=True)
    extra = {
        name: value
        for name in _TURN_FIELDS - known.keys()
        if (value := _first_set(options.get(name), session.get(name))) is not None
    }
    return TurnOptions(**known, **extra)


def _first_set(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def repair_conversation(conversation: list[dict[str, Any]]) -> None:
    """Keep the conversation valid for the Messages API after an error, interrupt or crash."""
    if not conversation:
        return
    last = conversation[-1]
    if last["role"] == "assistant" and isinstance(last["content"], list):
        pending = [b["id"] for b in last["content"] if b.get("type") == "tool_use"]
        if pending:
            conversation.append({
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": tid,
                     "content": "interrupted before the tool ran", "is_error": True}
                    for tid in pending
                ],
            })
    elif last["role"] == "user":
        conversation.append(
            {"role": "assistant", "content": [{"type": "text", "text": "(turn interrupted)"}]}
        )


class TurnRunner:
    """Starts turns, feeds their events to the log, and closes them (``done``) saved."""

    def __init__(
        self,
        settings: Settings,
        session: Bound,
        persist: Persister,
        metrics: SessionMetrics,
        after_turn: Callable[[], Awaitable[None]],
    ) -> None:
        self.settings = settings
        self.session = session
        self.persist = persist
        self.metrics = metrics
        self.after_turn = after_turn
        self.task: asyncio.Task[None] | None = None
        self.open = False  # True from session_start until done
        self.interrupt_flag = asyncio.Event()

    async def start(self, prompt: Prompt, options: dict[str, Any]) -> int:
        """Start a turn; returns the sequence number of its ``session_start`` event."""
        s = self.session
        if s.record.status == "ended":
            raise SessionEnded(f"session {s.record.id} has ended", session_id=s.record.id)
        if self.task is not None and not self.task.done():
            if self.open:
                raise SessionBusy(
                    f"session {s.record.id} is running a turn; wait for it or interrupt it",
                    session_id=s.record.id,
                )
            await self.task  # only the end-of-turn snapshot is left
        self.interrupt_flag = asyncio.Event()
        self.open = True
        s.record = s.record.model_copy(update={"status": "active", "last_active_at": utcnow()})
        start, _, _ = s.log.emit(
            "session_start", {"sessionId": s.record.id, "version": __version__}
        )
        self.task = asyncio.create_task(self._run(prompt, options))
        self.persist.soon()  # the prompt and "running" reach the store before the model answers
        return start

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
        """Interrupt the running turn and wait (up to ``timeout_s``) for it to end."""
        if self.task is not None and not self.task.done():
            self.interrupt_flag.set()
            await asyncio.wait({self.task}, timeout=timeout_s)

    async def _run(self, prompt: Prompt, options: dict[str, Any]) -> None:
        s = self.session
        opts = turn_options(options, s.record.config, self.settings)
        started = time.perf_counter()
        outcome = _Outcome()
        try:
            async for ev in s.loop.run_turn(s.conversation, prompt, opts, self.interrupt_flag):
                outcome.see(ev.type, ev.data, started)
                s.log.emit(ev.type, ev.data)
                if ev.type == "tool_use":
                    self.metrics.tool_call(s.record.agent_name, ev.data.get("name", "?"))
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
        await self.after_turn()

    async def _close(self, outcome: _Outcome, latency_ms: float) -> None:
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
        try:
            await self.persist.flush(wait=True)
        except Exception:
            logger.exception("end-of-turn flush failed; the background flusher retries")
            self.persist.soon()
        s.log.publish(done)


@dataclasses.dataclass
class _Outcome:
    usage: Usage = dataclasses.field(default_factory=Usage)
    model_calls: int = 0
    tool_calls: int = 0
    first_ms: float | None = None

    def see(self, type_: str, data: dict[str, Any], started: float) -> None:
        if self.first_ms is None and type_ in ("text_delta", "message"):
            self.first_ms = (time.perf_counter() - started) * 1000
        if type_ == "tool_use":
            self.tool_calls += 1
        if type_ == "message" and data.get("type") == "result":
            self.usage = Usage.model_validate(data.get("usage") or {})
            self.model_calls = int(data.get("num_turns") or 0)
