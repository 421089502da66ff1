"""The session's turns without Ray: the busy policy (queue, reject, interrupt), the stored
queue, and a turn continued after its worker was lost. Turns are ordered by latches."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ash_ray.agent.messages import AgentEvent
from ash_ray.config import load_settings
from ash_ray.errors import SessionBusy, SessionEnded, WorkerLost, WorkerReleasing
from ash_ray.lifecycle_events import UNSAVED_SEQ_MARGIN, prompt_stored
from ash_ray.models import EventRecord, QueuedTurn, SessionRecord, WriteBatch, utcnow
from ash_ray.session.events import EventLog
from ash_ray.session.metrics import SessionMetrics
from ash_ray.session.persist import Persister
from ash_ray.session.recovery import LOST_TOOL
from ash_ray.session.state import Bound
from ash_ray.session.streams import events, follow
from ash_ray.session.turns import TurnRunner


class Loop:
    """A loop whose turns wait on a latch per prompt; replies echo the prompt."""

    model = "fake"

    def __init__(self) -> None:
        self.latches: dict[str | None, asyncio.Event] = {}
        self.started: list[str | None] = []
        self.seen: list[list[dict[str, Any]]] = []

    def latch(self, prompt: str | None) -> asyncio.Event:
        return self.latches.setdefault(prompt, asyncio.Event())

    async def run_turn(
        self, conversation: list[dict[str, Any]], prompt: str | None, options: Any,
        interrupt: asyncio.Event,
    ) -> AsyncIterator[AgentEvent]:
        self.started.append(prompt)
        if prompt is not None:  # as the agent loop: in the history, then its event
            conversation.append({"role": "user", "content": prompt})
            yield AgentEvent("message", {"type": "user", "message": {"content": prompt}})
        self.seen.append(list(conversation))
        stop = asyncio.create_task(interrupt.wait())
        go = asyncio.create_task(self.latch(prompt).wait())
        await asyncio.wait({stop, go}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        go.cancel()
        subtype = "interrupted" if interrupt.is_set() else "success"
        answer = f"answer to {prompt}"
        conversation.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        yield AgentEvent("message", {"type": "result", "subtype": subtype, "result": answer,
                                     "usage": {}, "num_turns": 1})


class Registry:
    """The registry's part the runner uses: flushes and the stored turn queue."""

    def __init__(self) -> None:
        self.queue: dict[str, QueuedTurn] = {}
        self.batches: list[WriteBatch] = []
        self.calls = 0  # put_turn and delete_turn calls (each a Ray call and a transaction)

    def record(self, batch: WriteBatch, stats: dict[str, Any]) -> Any:
        async def call() -> None:
            self.batches.append(batch)
            for item in batch.turns:  # as the store applies them: upserts, then deletes
                self.queue[item.message_id] = item
            for _sid, message_id in batch.turns_done:
                self.queue.pop(message_id, None)

        return call()

    async def put_turn(self, item: QueuedTurn) -> None:
        self.calls += 1
        self.queue[item.message_id] = item

    async def delete_turn(self, session_id: str, message_id: str) -> None:
        self.calls += 1
        self.queue.pop(message_id, None)


def _runner(
    conversation: list[dict[str, Any]] | None = None, recovery: str = "continue"
) -> tuple[TurnRunner, Loop, Registry]:
    now = utcnow()
    record = SessionRecord(id="s1", agent_name="a", sandbox_id="s1", status="active",
                           created_at=now, last_active_at=now, last_seq=7)
    loop, registry = Loop(), Registry()
    session = Bound(record=record, log=EventLog("s1", last_seq=7), spec=None,  # type: ignore[arg-type]
                    sandbox=None, loop=loop, conversation=list(conversation or []))  # type: ignore[arg-type]
    persist = Persister(registry, session, running=lambda: False)

    async def after_turn() -> None:
        return None

    settings = load_settings(turn_recovery=recovery)
    runner = TurnRunner(settings, session, persist, SessionMetrics(), after_turn, registry)
    return runner, loop, registry


async def _result(runner: TurnRunner, start: int) -> str:
    async for _seq, type_, data in events(runner.session.log, start - 1):
        if type_ == "message" and data.get("type") == "result":
            return str(data["result"])
    raise AssertionError("no result")


async def _until(check: Any) -> None:
    """Let the event loop run until ``check()`` holds (a bounded number of steps)."""
    for _ in range(10_000):
        if check():
            return
        await asyncio.sleep(0)  # one loop step, not a delay
    raise AssertionError("the condition never held")


async def test_queued_messages_run_in_order_each_as_its_own_turn() -> None:
    runner, loop, registry = _runner()
    first = await runner.start("one", {})
    await runner.start_saved_now()  # as the worker does before it answers
    waiting = [asyncio.create_task(runner.start(p, {"if_busy": "queue"})) for p in ("two", "three")]
    await _until(lambda: len(runner.line) == 2)
    # Acknowledged only once stored, and in order.
    assert [i.prompt for i in sorted(registry.queue.values(), key=lambda i: i.position)] == [
        "one", "two", "three"]
    assert not any(t.done() for t in waiting)  # their streams start when their turns start
    loop.latch("one").set()
    second = await waiting[0]
    assert second > first and not waiting[1].done()
    loop.latch("two").set()
    loop.latch("three").set()
    third = await waiting[1]
    assert await _result(runner, second) == "answer to two"
    assert await _result(runner, third) == "answer to three"
    assert loop.started == ["one", "two", "three"]
    await runner.task  # type: ignore[misc]
    await _until(lambda: not registry.queue)


async def test_a_turn_is_stored_as_running_while_it_runs_within_the_flushes() -> None:
    runner, loop, registry = _runner()
    await runner.start("one", {})
    await _until(lambda: "one" in [i.prompt for i in registry.queue.values()])
    (item,) = registry.queue.values()
    assert item.state == "running"
    assert any(item in b.turns and b.events for b in registry.batches)  # with the prompt
    loop.latch("one").set()
    await runner.task  # type: ignore[misc]
    assert not registry.queue
    ended = [b for b in registry.batches if b.turns_done]
    assert [e.type for e in ended[-1].events][-1] == "done"  # removed with the turn's end
    assert registry.calls == 0  # no write of its own


class ToolLoop(Loop):
    """A turn whose model asks for a tool; the tool notes what the registry holds as it
    starts, then waits on the prompt's latch."""

    def __init__(self, registry: Registry) -> None:
        super().__init__()
        self.registry = registry
        self.saved_at_tool_start: list[list[dict[str, Any]]] = []

    async def run_turn(
        self, conversation: list[dict[str, Any]], prompt: str | None, options: Any,
        interrupt: asyncio.Event,
    ) -> AsyncIterator[AgentEvent]:
        conversation.append({"role": "user", "content": prompt})
        blocks = [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}}]
        conversation.append({"role": "assistant", "content": blocks})
        yield AgentEvent("message", {"type": "assistant", "parent_tool_use_id": None,
                                     "message": {"role": "assistant", "content": blocks}})
        self.saved_at_tool_start.append(
            [m.content for b in self.registry.batches for m in b.messages]
        )
        await self.latch(prompt).wait()
        yield AgentEvent("message", {"type": "result", "subtype": "success", "result": "ok",
                                     "usage": {}, "num_turns": 1})


async def test_the_models_request_for_a_tool_is_saved_before_the_tool_runs() -> None:
    # A worker lost while a tool runs is continued from the saved request (the tool gets
    # a "lost" result); unsaved, the model would be asked again and run the tool twice.
    runner, _, registry = _runner()
    loop = ToolLoop(registry)
    runner.session.loop = loop  # type: ignore[assignment]
    await runner.start("list files", {})
    await _until(lambda: loop.saved_at_tool_start)
    (saved,) = loop.saved_at_tool_start
    assert saved and saved[-1] == [{"type": "tool_use", "id": "t1", "name": "Bash",
                          "input": {"command": "ls"}}]
    loop.latch("list files").set()
    await _until(lambda: not runner.open)


async def test_a_turns_start_is_saved_once_with_its_prompt_in_the_conversation() -> None:
    # One save before the caller hears of the turn: its queue row, session_start, and the
    # prompt as the conversation's user message (a lost worker's successor, or the
    # registry, finds it in the history, not only in the row).
    runner, loop, registry = _runner()
    await runner.start("one", {})
    await runner.start_saved_now()
    (batch,) = registry.batches
    assert [t.prompt for t in batch.turns] == ["one"]
    assert [(m.role, m.content) for m in batch.messages] == [("user", "one")]
    assert [e.type for e in batch.events] == ["session_start", "message"]
    assert prompt_stored(batch.events)
    loop.latch("one").set()
    await _until(lambda: not runner.open)


class SlowHookLoop(Loop):
    """Prompt hooks that do not finish until released: the prompt joins the history late."""

    def __init__(self) -> None:
        super().__init__()
        self.hooks_done = asyncio.Event()

    async def run_turn(
        self, conversation: list[dict[str, Any]], prompt: str | None, options: Any,
        interrupt: asyncio.Event,
    ) -> AsyncIterator[AgentEvent]:
        await self.hooks_done.wait()
        async for event in super().run_turn(conversation, prompt, options, interrupt):
            yield event


async def test_slow_prompt_hooks_do_not_hold_the_turns_start_unsaved() -> None:
    runner, _, registry = _runner()
    loop = SlowHookLoop()
    runner.session.loop = loop  # type: ignore[assignment]
    await runner.start("one", {})
    await runner.start_saved_now()  # (after PROMPT_WAIT_S, the hooks still running)
    assert [t.prompt for b in registry.batches for t in b.turns] == ["one"]
    assert not [m for b in registry.batches for m in b.messages]
    assert not prompt_stored([e for b in registry.batches for e in b.events])
    loop.hooks_done.set()
    loop.latch("one").set()
    await _until(lambda: not runner.open)


async def test_reject_is_a_409_and_interrupt_stops_the_running_turn_first() -> None:
    runner, loop, _ = _runner()
    first = await runner.start("one", {})
    with pytest.raises(SessionBusy):
        await runner.start("two", {})  # the HTTP default
    start = await runner.start("two", {"if_busy": "interrupt"})
    out = [e async for e in events(runner.session.log, first - 1)]
    result = next(d for _, t, d in out if t == "message" and d["type"] == "result")
    assert result["subtype"] == "interrupted"
    loop.latch("two").set()
    assert await _result(runner, start) == "answer to two"


async def test_a_caller_that_goes_away_leaves_its_queued_turn_to_run() -> None:
    runner, loop, _ = _runner()
    await runner.start("one", {})
    waiting = asyncio.create_task(runner.start("two", {"if_busy": "queue"}))
    await _until(lambda: runner.line)
    waiting.cancel()
    loop.latch("one").set()
    loop.latch("two").set()
    await _until(lambda: loop.started == ["one", "two"])


async def test_a_lost_workers_turn_continues_after_its_finished_steps() -> None:
    tool_use = {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "make"}}
    stored = [{"role": "user", "content": "build it"},
              {"role": "assistant", "content": [tool_use]}]
    runner, loop, _ = _runner(stored)
    running = QueuedTurn(session_id="s1", message_id="m1", position=1, prompt="build it",
                         state="running")
    queued = QueuedTurn(session_id="s1", message_id="m2", position=2, prompt="then test")
    runner.recover([running, queued], turn_open=True)
    await _until(lambda: loop.started)
    assert runner.open and loop.started == [None]  # the model is called again, no new prompt
    sent = loop.seen[0]
    assert sent[:2] == stored  # the finished reply is kept
    (lost,) = sent[2]["content"]  # the running tool gets an error result; it is not re-run
    assert lost["tool_use_id"] == "t1" and lost["is_error"] and lost["content"] == LOST_TOOL
    # The same numbering, after the stored events and the numbers the lost worker may
    # have shown a client without saving them.
    log = runner.session.log
    assert log.since(7)[0][0] == log.oldest_seq() == 7 + UNSAVED_SEQ_MARGIN + 1
    # The caller whose call is re-sent (same message id) follows the continued turn.
    again = await runner.start("build it", {"message_id": "m1"})
    loop.latch(None).set()
    assert await _result(runner, again) == "answer to None"
    loop.latch("then test").set()
    await _until(lambda: loop.started == [None, "then test"])


async def test_a_call_resent_after_its_continued_turn_ended_gets_that_turn_again() -> None:
    runner, loop, _ = _runner([{"role": "user", "content": "build it"}])
    running = QueuedTurn(session_id="s1", message_id="m1", position=1, prompt="build it",
                         state="running")
    runner.recover([running], turn_open=True)
    loop.latch(None).set()
    await _until(lambda: not runner.open)  # it ended before the re-sent call came
    again = await runner.start("build it", {"message_id": "m1"})
    assert not runner.open  # not run a second time
    assert await _result(runner, again) == "answer to None"
    assert loop.started == [None]


async def test_with_recovery_interrupt_the_turn_is_closed_and_a_resend_is_refused() -> None:
    stored = [{"role": "user", "content": "build it"}]
    runner, loop, registry = _runner(stored, recovery="interrupt")
    running = QueuedTurn(session_id="s1", message_id="m1", position=1, prompt="build it",
                         state="running")
    registry.queue["m1"] = running
    runner.recover([running], turn_open=True)
    assert not runner.open and loop.started == []
    assert runner.session.conversation[-1]["role"] == "assistant"  # closed, valid for the API
    with pytest.raises(WorkerLost):
        await runner.start("build it", {"message_id": "m1"})
    await _until(lambda: not registry.queue)


def _lost_turn(prompt: str) -> tuple[Any, Any, Any, QueuedTurn]:
    """A worker's runner over a finished conversation, and the running row of a turn
    (``prompt``) that a lost worker left open."""
    stored = [{"role": "user", "content": "earlier"},
              {"role": "assistant", "content": [{"type": "text", "text": "ok"}]}]
    runner, loop, registry = _runner(stored)
    running = QueuedTurn(session_id="s1", message_id="m1", position=1, prompt=prompt,
                         state="running")
    registry.queue["m1"] = running
    return runner, loop, registry, running


async def test_a_lost_turn_that_cannot_be_continued_ends_for_its_followers() -> None:
    """An open turn whose stored conversation does not end with the user's side cannot
    be continued: its followers (the client's stream) get an error and `done`, not a
    wait without end."""
    runner, loop, registry, running = _lost_turn("lost")
    runner.persist.start()  # as the worker's bind does, before recover
    runner.recover([running], turn_open=True)
    assert not runner.open and loop.started == []
    ending = [(e[1], e[2]) for e in runner.session.log.since(7)]
    assert [t for t, _ in ending] == ["error", "done"]
    assert "send the message again" in ending[0][1]["error"]
    await _until(lambda: not registry.queue)
    await _until(lambda: any(b.events and b.events[-1].type == "done" for b in registry.batches))


async def test_a_lost_turn_whose_prompt_was_not_stored_is_asked_again() -> None:
    """The running row is saved with the turn's first flush, its prompt joins the
    conversation with a later one: a server lost in between leaves the prompt in the
    running row only. The acknowledged message is run from there, not lost."""
    runner, loop, _registry, running = _lost_turn("again")
    runner.recover([running], turn_open=True, prompt_saved=False)
    await _until(lambda: loop.started)
    assert loop.started == ["again"] and runner.open
    loop.latch("again").set()
    await runner.task  # type: ignore[misc]
    assert [e[1] for e in runner.session.log.since(7)].count("error") == 0


def test_a_prompt_counts_as_stored_once_a_message_follows_its_session_start() -> None:
    def ev(seq: int, type_: str) -> EventRecord:
        return EventRecord(session_id="s1", seq=seq, type=type_, data={}, created_at=utcnow())

    assert not prompt_stored([ev(1, "done"), ev(2, "session_start")])
    assert not prompt_stored([ev(2, "session_start"), ev(3, "mcp_status")])
    assert prompt_stored([ev(2, "session_start"), ev(3, "message")])
    assert prompt_stored([ev(5, "message"), ev(6, "tool_use")])  # a long turn


async def test_a_stream_ends_at_its_done_when_the_next_turn_starts_at_once() -> None:
    runner, loop, _ = _runner()
    first = await runner.start("one", {})
    waiting = asyncio.create_task(runner.start("two", {"if_busy": "queue"}))
    await _until(lambda: runner.line)
    loop.latch("one").set()
    second = await waiting  # begun before the first stream read its done
    batches = [b async for b in follow(runner.session.log, first - 1, 5)]
    seqs = [e[0] for b in batches for e in b]
    assert batches[-1][-1][1] == "done" and second not in seqs
    loop.latch("two").set()


def test_a_skip_leaves_numbers_unused_and_readers_of_older_events_to_the_store() -> None:
    log = EventLog("s1", last_seq=5)
    log.emit("lifecycle", {})  # 6: in memory, and unsaved
    log.skip(100)
    first, _, _ = log.emit("text_delta", {"text": "a"})
    log.emit("done", {})
    assert first == 107 and log.oldest_seq() == 107  # 6 is read from the store now
    assert [e[0] for e in log.since(3)] == [107, 108]  # after a number before the gap
    assert [e[0] for e in log.since(50)] == [107, 108]  # a number inside the gap
    assert [e[0] for e in log.since(107)] == [108]
    assert [r.seq for r in log.take_unsaved()] == [6, 107, 108]  # nothing is lost


async def test_a_message_to_a_releasing_worker_is_sent_elsewhere_not_told_ended() -> None:
    # A pause or an eviction under way: the caller re-attaches (the registry resumes the
    # session on a new worker) instead of hearing "ended" (410) of a live session.
    runner, _loop, _ = _runner()
    await runner.stop(1)
    with pytest.raises(WorkerReleasing):
        await runner.start("hello", {})
    runner.session.record = runner.session.record.model_copy(update={"status": "ended"})
    with pytest.raises(SessionEnded):
        await runner.start("hello", {})


async def test_a_message_waiting_for_the_last_snapshot_sees_a_release_that_began() -> None:
    runner, loop, _ = _runner()
    finishing = asyncio.Event()

    async def snapshot_after_turn() -> None:
        await finishing.wait()

    runner.after_turn = snapshot_after_turn
    await runner.start("one", {})
    loop.latch("one").set()
    await _until(lambda: not runner.open)  # only its end-of-turn snapshot is left
    waiting = asyncio.create_task(runner.start("two", {}))
    await _until(lambda: not waiting.done() and runner.task is not None)
    stopping = asyncio.create_task(runner.stop(5))
    await _until(lambda: runner.closing)
    finishing.set()
    with pytest.raises(WorkerReleasing):
        await waiting
    await stopping
    assert loop.started == ["one"]  # "two" never started on the closing worker
