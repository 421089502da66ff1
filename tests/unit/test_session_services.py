"""The session worker's parts without Ray: the bind guard, the event streams, turn options,
persistence."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from collections import defaultdict
from typing import Any

import pytest
from ray._common.signature import extract_signature

from ash_ray.agent import TurnOptions
from ash_ray.config import load_settings
from ash_ray.errors import Conflict, Unavailable, WorkerReleasing
from ash_ray.models import SessionConfig, SessionRecord, WriteBatch, utcnow
from ash_ray.session.actor import SessionWorker
from ash_ray.session.binding import grown_past
from ash_ray.session.events import EventLog
from ash_ray.session.options import turn_options
from ash_ray.session.persist import Persister
from ash_ray.session.recovery import repair_conversation
from ash_ray.session.state import BindGuard, Bound, HasGuard, bound, bound_stream
from ash_ray.session.streams import events, follow
from tests.unit.test_turn_queue import _result, _runner, _until

# Worker methods that never wait for a bind: the probe, the bind itself, the death watch,
# and `describe` (an operator's view of an unbound pool worker must not hang).
UNGUARDED = {"ready", "bind", "watch", "unbind", "describe"}


def _remote_methods() -> dict[str, Any]:
    # As Ray sees them: the class's own methods and its mixins' (files, binding).
    return {
        name: fn for name, fn in inspect.getmembers(SessionWorker, callable)
        if not name.startswith("_")
    }


def test_every_session_method_waits_for_the_bind_through_the_one_guard() -> None:
    methods = _remote_methods()
    assert {"ask", "ask_stream", "run_turn", "exec", "send"} <= set(methods)
    unguarded = {name for name, fn in methods.items() if not getattr(fn, "needs_bind", False)}
    assert unguarded == UNGUARDED


def test_ray_sees_the_guarded_methods_without_the_session_argument() -> None:
    # Ray checks arguments against inspect.unwrap(method)'s signature.
    params = extract_signature(inspect.unwrap(SessionWorker.run_turn), ignore_first=True)
    # for_session: the session the caller means (a reused worker refuses another's).
    assert [p.name for p in params] == ["prompt", "options", "heartbeat_s", "for_session"]
    assert inspect.isasyncgenfunction(SessionWorker.ask_stream)
    assert inspect.iscoroutinefunction(SessionWorker.ask)


class Worker(HasGuard):
    """A minimal worker with one call and one stream behind the guard."""

    def __init__(self, wait_s: float = 5.0) -> None:
        self.guard = BindGuard(wait_s)

    @bound
    async def call(self, s: Bound, x: int) -> tuple[str, int]:
        return s.record.id, x

    @bound_stream
    async def stream(self, s: Bound, n: int) -> Any:
        for i in range(n):
            yield s.record.id, i


def _bound(session_id: str = "s1") -> Bound:
    now = utcnow()
    record = SessionRecord(id=session_id, agent_name="a", sandbox_id=session_id,
                           status="active", created_at=now, last_active_at=now)
    return Bound(record=record, log=EventLog(session_id), spec=None, sandbox=None,  # type: ignore[arg-type]
                 loop=None)  # type: ignore[arg-type]


async def test_a_stream_started_before_the_bind_waits_for_it() -> None:
    worker = Worker()

    async def consume() -> list[Any]:
        return [item async for item in worker.stream(2)]

    streaming = asyncio.create_task(consume())
    calling = asyncio.create_task(worker.call(7))
    await asyncio.sleep(0)
    assert not streaming.done() and not calling.done()  # waiting, not "not bound"
    worker.guard.settle(_bound())
    assert await streaming == [("s1", 0), ("s1", 1)]
    assert await calling == ("s1", 7)


async def test_a_reused_worker_refuses_calls_meant_for_its_earlier_session() -> None:
    worker = Worker(wait_s=30.0)
    worker.guard.settle(_bound("s1"))
    assert await worker.call(1, for_session="s1") == ("s1", 1)  # type: ignore[call-arg]
    watch = asyncio.create_task(worker.guard.unbound.wait())  # s1's death watch
    worker.guard.reset()  # s1 released, the worker back in the pool
    await asyncio.wait_for(watch, 5)  # ends with s1's stay, not with the process
    with pytest.raises(WorkerReleasing, match="s1"):  # at once, not after the bind wait
        await asyncio.wait_for(worker.call(2, for_session="s1"), 5)  # type: ignore[call-arg]
    worker.guard.settle(_bound("s2"))
    with pytest.raises(WorkerReleasing):
        [x async for x in worker.stream(1, for_session="s1")]  # type: ignore[call-arg]
    assert await worker.call(3, for_session="s2") == ("s2", 3)  # type: ignore[call-arg]
    assert await worker.call(4) == ("s2", 4)  # the registry's own calls name none
    worker.guard.reset()  # s2 leaves; s1 comes back to this worker, its bind under way
    calling = asyncio.create_task(worker.call(5, for_session="s1"))  # type: ignore[call-arg]
    await asyncio.sleep(0)
    worker.guard.expect("s1")
    worker.guard.settle(_bound("s1"))
    assert await asyncio.wait_for(calling, 5) == ("s1", 5)


def test_a_worker_that_grew_past_the_memory_limit_is_not_reused() -> None:
    # This test process is well over 1 MiB and well under 1 TiB resident.
    assert grown_past(1) and not grown_past(2**20) and not grown_past(0)


async def test_followers_of_a_session_that_left_the_worker_are_told_to_attach_again() -> None:
    log = EventLog("s1")
    log.emit("message", {"n": 1})
    waiting = asyncio.create_task(log.wait(1, 30))
    await asyncio.sleep(0)
    log.close()
    with pytest.raises(WorkerReleasing, match="s1"):
        await asyncio.wait_for(waiting, 5)
    assert [e[0] for e in await log.wait(0, 30)] == [1]  # what is left is still read


async def test_a_failed_bind_fails_every_waiting_call() -> None:
    worker = Worker()
    calling = asyncio.create_task(worker.call(1))
    await asyncio.sleep(0)
    worker.guard.settle(error="OSError: disk full")
    with pytest.raises(Unavailable, match="disk full"):
        await calling
    with pytest.raises(Unavailable):
        [item async for item in worker.stream(1)]


async def test_a_worker_never_bound_says_so_after_the_wait() -> None:
    with pytest.raises(Conflict, match="not bound"):
        await Worker(wait_s=0.01).call(1)


# ---------------------------------------------------------------- streams


async def test_follow_pushes_batches_heartbeats_and_ends_with_done() -> None:
    log = EventLog("s")
    log.emit("session_start", {})
    got: list[list[Any]] = []

    async def reader() -> None:
        async for batch in follow(log, 0, heartbeat_s=0.01):
            got.append(batch)
            if not batch and len(got) < 3:
                log.emit("text_delta", {"delta": "hi"})
            elif not batch:
                log.emit("done", {})

    await asyncio.wait_for(reader(), 5)
    types = [[e[1] for e in batch] for batch in got]
    assert types[0] == ["session_start"] and types[-1] == ["done"]
    assert [] in types  # a heartbeat when nothing happened


class _WatchedLog(EventLog):
    """An event log that says when a reader waits for events after a given number."""

    def __init__(self, session_id: str) -> None:
        super().__init__(session_id)
        self.waiting_after: defaultdict[int, asyncio.Event] = defaultdict(asyncio.Event)

    async def wait(self, after: int, timeout_s: float, limit: int = 1000) -> list[Any]:
        self.waiting_after[after].set()
        return await super().wait(after, timeout_s, limit)


async def test_a_turns_last_events_wait_for_its_done_and_go_in_one_batch() -> None:
    log = _WatchedLog("s")
    log.emit("session_start", {})
    got: list[list[str]] = []

    async def reader() -> None:
        async for batch in follow(log, 0, heartbeat_s=5):
            got.append([e[1] for e in batch])

    reading = asyncio.ensure_future(reader())
    await asyncio.wait_for(log.waiting_after[1].wait(), 5)
    log.emit("turn_complete", {})
    await asyncio.wait_for(log.waiting_after[2].wait(), 5)  # the reader has it
    log.emit("done", {})  # the turn's end saved
    await asyncio.wait_for(reading, 5)
    assert got == [["session_start"], ["turn_complete", "done"]]


async def test_a_turns_end_not_saved_within_the_heartbeat_still_reaches_the_reader() -> None:
    log = EventLog("s")
    log.emit("error", {"error": "model API error"})
    got: list[list[str]] = []

    async def reader() -> None:
        async for batch in follow(log, 0, heartbeat_s=0.01):
            got.append([e[1] for e in batch])
            if len(got) == 2:
                log.emit("done", {})

    await asyncio.wait_for(reader(), 5)
    assert got[0] == ["error"] and got[-1] == ["done"]


async def test_events_yields_one_by_one_up_to_done() -> None:
    log = EventLog("s")
    for type_ in ("session_start", "message", "done", "session_start"):
        log.emit(type_, {})
    assert [e[1] async for e in events(log, 0)] == ["session_start", "message", "done"]


async def test_a_replay_from_an_old_event_runs_through_earlier_turns_to_the_current_done() -> None:
    log = EventLog("s")
    for type_ in ("session_start", "message", "done"):
        log.emit(type_, {})
    start, _, _ = log.emit("session_start", {})
    log.emit("message", {})
    got: list[str] = []

    async def reader() -> None:
        async for batch in follow(log, 0, heartbeat_s=0.01, turn_start=start):
            got.extend(e[1] for e in batch)
            if not batch:
                log.emit("done", {})
                log.emit("session_start", {})  # a queued turn, not this stream's

    await asyncio.wait_for(reader(), 5)
    assert got == ["session_start", "message", "done", "session_start", "message", "done"]


# ---------------------------------------------------------------- turns


def test_thinking_and_every_loop_option_reach_the_turn() -> None:
    settings = load_settings(max_turns=7)
    thinking = {"type": "enabled", "budget_tokens": 2048}
    opts = turn_options(
        {"thinking": thinking, "effort": "high", "include_partial_messages": True,
         "max_turns": None, "model": None},
        SessionConfig(model="m-session", system_prompt="be brief"),
        settings,
    )
    assert opts.thinking == thinking
    assert opts.model == "m-session" and opts.max_turns == 7 and opts.include_partial
    assert opts.system_prompt == "be brief"
    if "effort" in {f.name for f in dataclasses.fields(TurnOptions)}:
        assert opts.effort == "high"  # type: ignore[attr-defined]


def test_a_crash_cut_conversation_is_closed_like_an_interrupted_turn() -> None:
    convo: list[dict[str, Any]] = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Bash",
                                           "input": {}}]},
    ]
    repair_conversation(convo)
    assert convo[-1]["content"][0]["tool_use_id"] == "t1"
    repair_conversation(convo)  # a trailing tool result: the turn's reply is missing
    assert convo[-1]["role"] == "assistant"
    before = list(convo)
    repair_conversation(convo)
    assert convo == before  # valid conversations are left alone


class Sink:
    def __init__(self, fail: int = 0) -> None:
        self.batches: list[WriteBatch] = []
        self.fail = fail

    def record(self, batch: WriteBatch, stats: dict[str, Any]) -> Any:
        async def call() -> None:
            if self.fail:
                self.fail -= 1
                raise OSError("registry unreachable")
            self.batches.append(batch)

        return call()


async def test_persister_sends_new_rows_once_and_resends_after_a_failure() -> None:
    session = _bound()
    session.conversation.append({"role": "user", "content": "hi"})
    session.log.emit("session_start", {})
    sink = Sink(fail=1)
    persist = Persister(sink, session, running=lambda: True)
    persist.saved_messages = 0
    with pytest.raises(OSError):
        await persist.flush()
    session.log.emit("done", {})
    await persist.flush()
    (batch,) = sink.batches
    assert [m.content for m in batch.messages] == ["hi"]
    assert [e.type for e in batch.events] == ["session_start", "done"]
    assert batch.sessions[0].last_seq == 2
    await persist.flush()
    assert len(sink.batches) == 1  # nothing new: nothing sent (no call, no transaction)
    session.record = session.record.model_copy(update={"status": "paused"})
    await persist.flush()
    assert not sink.batches[-1].messages and not sink.batches[-1].events
    assert sink.batches[-1].sessions[0].status == "paused"


# ---------------------------------------------------------------- release


async def test_an_evictions_release_is_refused_while_a_turn_runs_or_finishes() -> None:
    runner, loop, _registry = _runner()
    worker = SessionWorker.__new__(SessionWorker)  # the shell around a runner, no Ray
    worker.settings, worker.turns, worker.persist = runner.settings, runner, runner.persist
    worker.guard = BindGuard()
    worker.guard.settle(runner.session)
    released: list[str] = []

    async def release(s: Bound, status: str) -> SessionRecord:
        released.append(status)
        return s.record

    worker._release = release  # type: ignore[method-assign]  # (the sandbox part)
    first = await runner.start("one", {})
    assert await worker.release_idle("paused") is None  # it has just started a turn
    finishing = asyncio.Event()

    async def snapshot_after_turn() -> None:
        await finishing.wait()

    runner.after_turn = snapshot_after_turn
    loop.latch("one").set()
    await _until(lambda: not runner.open)
    assert await worker.release_idle("paused") is None  # a message would wait for this
    finishing.set()
    assert await _result(runner, first) == "answer to one"
    assert not runner.interrupt_flag.is_set() and released == []  # the turn ran to its end
    await _until(runner.idle)
    assert await worker.release_idle("paused") == runner.session.record
    assert released == ["paused"]
